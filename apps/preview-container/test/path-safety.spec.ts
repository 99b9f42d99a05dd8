import { join } from 'node:path';
import { resolveInside, safeRelativePath, UnsafePathError } from '../src/path-safety';

describe('safeRelativePath', () => {
  it.each([
    ['index.html', 'index.html'],
    ['src/App.jsx', 'src/App.jsx'],
    ['src/components/deep/Button.jsx', 'src/components/deep/Button.jsx'],
    ['./src/main.jsx', 'src/main.jsx'],
    ['src/a/./b.js', 'src/a/b.js'],
    ['.env', '.env'],
    ['public/..hidden', 'public/..hidden'],
    ['a..b/c...js', 'a..b/c...js'],
  ])('accepts %j as %j', (input, expected) => {
    expect(safeRelativePath(input)).toBe(expected);
  });

  it.each([
    ['/etc/passwd', 'absolute'],
    ['//server/share/x', 'absolute'],
    ['C:/Windows/x', 'absolute'],
    ['c:evil', 'absolute'],
    ['\\\\server\\share', 'backslash'],
    ['src\\win\\style.css', 'backslash'],
    ['../evil.js', '".."'],
    ['src/../../evil.js', '".."'],
    ['src/..', '".."'],
    ['..\\evil.js', 'backslash'],
    ['src//a.js', 'empty path segment'],
    ['src/', 'empty path segment'],
    ['a/../b.js', '".."'],
    ['evil\0.js', 'NUL'],
    ['', 'empty'],
    ['   ', 'empty'],
    ['.', 'empty'],
    ['./', 'empty'],
    ['src/ /x.js', 'blank'],
    ['node_modules/react/index.js', 'reserved'],
    ['./node_modules/x', 'reserved'],
    ['.vite-cache/deps/react.js', 'reserved'],
    ['.git/config', 'reserved'],
    ['src/node_modules/x.js', 'reserved'],
  ])('refuses %j (%s)', (input, reason) => {
    expect(() => safeRelativePath(input)).toThrow(UnsafePathError);
    expect(() => safeRelativePath(input)).toThrow(reason);
  });

  it('refuses a value that is not a string', () => {
    expect(() => safeRelativePath(undefined)).toThrow(UnsafePathError);
    expect(() => safeRelativePath(42)).toThrow(UnsafePathError);
  });
});

describe('resolveInside', () => {
  const root = '/tmp/work';

  it('resolves nested paths inside the root', () => {
    expect(resolveInside(root, 'src/App.jsx')).toBe(join(root, 'src/App.jsx'));
    expect(resolveInside(`${root}/`, 'a/b/c.js')).toBe(join(root, 'a/b/c.js'));
  });

  it('refuses paths that leave the root or are the root', () => {
    expect(() => resolveInside(root, '../evil.js')).toThrow(UnsafePathError);
    expect(() => resolveInside(root, '/etc/passwd')).toThrow(UnsafePathError);
    expect(() => resolveInside(root, '../work-other/x.js')).toThrow(UnsafePathError);
    expect(() => resolveInside(root, '.')).toThrow(UnsafePathError);
  });
});
