import { checkFilePath, isCodeConfig, MAX_PATH_LENGTH, normalizeFilePath, UnsafePathError } from './file-paths';

describe('project file path rules', () => {
  it.each([
    ['index.html', 'index.html'],
    ['package.json', 'package.json'],
    ['src/App.jsx', 'src/App.jsx'],
    ['src/components/deep/nested/Button.svelte', 'src/components/deep/nested/Button.svelte'],
    ['./src/main.ts', 'src/main.ts'],
    ['src/./lib/./a.js', 'src/lib/a.js'],
    ['.env', '.env'],
    ['.github/workflows/ci.yml', '.github/workflows/ci.yml'],
    ['public/..hidden', 'public/..hidden'],
    ['a..b/c...js', 'a..b/c...js'],
    ['src/node_modules_docs.md', 'src/node_modules_docs.md'],
    ['.gitignore', '.gitignore'],
    ['src/ünïcode/файл.js', 'src/ünïcode/файл.js'],
    ['with space/a b.js', 'with space/a b.js'],
    ['src/Git.js', 'src/Git.js'],
    ['src/مرحبا/שלום.js', 'src/مرحبا/שלום.js'],
  ])('accepts %j as %j', (input, expected) => {
    expect(normalizeFilePath(input)).toBe(expected);
    expect(checkFilePath(input)).toEqual({ path: expected, reason: null });
  });

  it.each([
    ['/etc/passwd', 'absolute'],
    ['//server/share/x', 'absolute'],
    ['C:/Windows/x', 'absolute'],
    ['c:evil', 'absolute'],
    ['../evil.js', '".."'],
    ['src/../../evil.js', '".."'],
    ['a/../b.js', '".."'],
    ['src/..', '".."'],
    ['..', '".."'],
    ['evil\0.js', 'NUL'],
    ['src/\0', 'NUL'],
    ['src/a\nb.js', 'control character'],
    ['src\\App.jsx', 'backslash'],
    ['..\\evil.js', 'backslash'],
    ['\\\\server\\share', 'backslash'],
    ['src//App.jsx', 'empty path segment'],
    ['src/', 'empty path segment'],
    ['', 'empty name'],
    ['   ', 'empty name'],
    ['.', 'empty name'],
    ['./', 'empty name'],
    ['src/ /x.js', 'blank path segment'],
    ['node_modules/react/index.js', '"node_modules" is reserved'],
    ['./node_modules/x', '"node_modules" is reserved'],
    ['packages/a/node_modules/x.js', '"node_modules" is reserved'],
    ['.vite-cache/deps/react.js', '".vite-cache" is reserved'],
    ['.git/config', '".git" is reserved'],
    ['sub/.git/hooks/pre-commit', '".git" is reserved'],
    ['.GIT/config', '".git" is reserved (in any case)'],
    ['Node_Modules/react/index.js', '"node_modules" is reserved'],
    ['src/NODE_MODULES/x.js', '"node_modules" is reserved'],
    ['.Vite-Cache/deps/a.js', '".vite-cache" is reserved'],
    ['.git./config', '".git" is reserved'],
    ['.git /config', '".git" is reserved'],
    ['\uff4e\uff4f\uff44\uff45_modules/x.js', '"node_modules" is reserved'],
    ['src/gpj\u202eexe.js', 'bidirectional formatting character (U+202E)'],
    ['src/App\u200b.jsx', 'invisible or bidirectional formatting character (U+200B)'],
    ['src/\u2066a\u2069.js', '(U+2066)'],
    ['\ufeffindex.html', '(U+FEFF)'],
    ['a'.repeat(MAX_PATH_LENGTH + 1), 'longer than'],
    [`src/${'b'.repeat(256)}.js`, 'longer than 255 bytes'],
  ])('refuses %j (%s)', (input, reason) => {
    const checked = checkFilePath(input);
    expect(checked.path).toBeNull();
    expect(checked.reason).toContain(reason);
    expect(() => normalizeFilePath(input)).toThrow(UnsafePathError);
    expect(() => normalizeFilePath(input)).toThrow(reason);
  });

  it.each([undefined, null, 42, {}, ['a']])('refuses %j, which is not a string', (input) => {
    expect(checkFilePath(input)).toEqual({ path: null, reason: 'not a string' });
  });

  it('names the path and the reason in the error', () => {
    try {
      normalizeFilePath('../x');
      throw new Error('expected a refusal');
    } catch (error) {
      expect(error).toBeInstanceOf(UnsafePathError);
      expect(error).toMatchObject({ path: '../x', reason: '".." segment', message: 'Refusing file path "../x": ".." segment' });
    }
  });
});

describe('isCodeConfig', () => {
  const file = (path: string, content = '') => ({ path, content });
  it.each(['vite.config.ts', 'vite.config.mjs', 'postcss.config.js', 'postcss.config.cjs', 'tailwind.config.ts', 'svelte.config.js', 'src/postcss.config.js', 'babel.config.js', '.postcssrc', '.postcssrc.json', '.babelrc', '.babelrc.js'])(
    'knows %s runs code',
    (path) => expect(isCodeConfig(file(path))).toBe(true),
  );
  it.each(['src/config.ts', 'src/config.ts.txt', 'config.json', 'tsconfig.json', 'src/App.tsx', 'vite-env.d.ts', 'src/config.css'])('leaves %s alone', (path) => {
    expect(isCodeConfig(file(path))).toBe(false);
  });
  it('reads package.json for a postcss or babel key, and survives one that is not JSON', () => {
    expect(isCodeConfig(file('package.json', '{"name":"x","postcss":{"plugins":{"./evil.js":{}}}}'))).toBe(true);
    expect(isCodeConfig(file('package.json', '{"name":"x","babel":{}}'))).toBe(true);
    expect(isCodeConfig(file('package.json', '{"name":"x","dependencies":{"postcss":"8"}}'))).toBe(false);
    expect(isCodeConfig(file('package.json', '{not json'))).toBe(false);
  });
  it('reads a package.json stored as bytes too (a raw upload), as Vite would: as UTF-8', () => {
    const asBytes = (text: string) => ({ path: 'package.json', content: Buffer.from(text).toString('base64'), encoding: 'base64' as const });
    expect(isCodeConfig(asBytes('{"name":"x","postcss":{"plugins":{"./evil.js":{}}}}'))).toBe(true);
    expect(isCodeConfig(asBytes('{"name":"x"}'))).toBe(false);
  });
});
