import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURE_PROJECTS_DIR } from '@velocity/testing';
import { PermanentError } from './errors';
import { checkRegistrySpec, dependencySetOf, type InstalledVersion } from './dependency-set';
import { lockedPackagesOf } from './lockfiles';

const builtin: InstalledVersion = (name) => ({ react: '19.2.0', 'react-dom': '19.2.0', vite: '8.3.8', '@vitejs/plugin-react': '6.3.0' })[name];
const pkg = (json: object) => ({ path: 'package.json', content: JSON.stringify(json) });
const refusal = (fn: () => unknown) => {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(PermanentError);
    return (error as Error).message;
  }
  throw new Error('expected a refusal');
};

describe('dependencySetOf', () => {
  it('is none without package.json, and builtin when the service satisfies every range', () => {
    expect(dependencySetOf([{ path: 'index.html', content: '' }], builtin)).toEqual({ kind: 'none' });
    expect(dependencySetOf([pkg({ dependencies: { react: '^19.2.0' }, devDependencies: { vite: '^8.0.0' } })], builtin)).toEqual({ kind: 'builtin' });
  });

  it('installs what the service does not satisfy: a newer range, a package it lacks, a tag, an alias', () => {
    for (const dependencies of [{ react: '^19.3.1' }, { 'react-router-dom': '^7.0.0' }, { react: 'latest' }, { vite5: 'npm:vite@^5.4.0' }]) {
      const set = dependencySetOf([pkg({ dependencies })], builtin);
      expect(set).toMatchObject({ kind: 'install', manager: 'npm', packageJson: { dependencies } });
    }
  });

  it('keys a set by what decides the install: not by scripts or name, but by versions and the lockfile', () => {
    const key = (files: Array<{ path: string; content: string }>) => {
      const set = dependencySetOf(files, builtin);
      if (set.kind !== 'install') throw new Error(`expected an install, got ${set.kind}`);
      return set.key;
    };
    const base = key([pkg({ name: 'a', scripts: { dev: 'vite' }, dependencies: { zustand: '^5.0.0' } })]);
    expect(key([pkg({ name: 'b', dependencies: { zustand: '^5.0.0' } })])).toBe(base);
    expect(key([pkg({ dependencies: { zustand: '^5.0.1' } })])).not.toBe(base);
    expect(key([pkg({ dependencies: { zustand: '^5.0.0' } }), { path: 'package-lock.json', content: '{"lockfileVersion":3,"packages":{}}' }])).not.toBe(base);
    expect(base).toMatch(/^[0-9a-f]{32}$/);
  });

  it('takes the lockfile there is, with its package manager, and installs even what the service has', () => {
    const lock = { lockfileVersion: 3, packages: { '': {}, 'node_modules/react': { version: '19.2.0', resolved: 'https://registry.npmjs.org/react/-/react-19.2.0.tgz' } } };
    const set = dependencySetOf([pkg({ dependencies: { react: '^19.2.0' } }), { path: 'package-lock.json', content: JSON.stringify(lock) }], builtin);
    expect(set).toMatchObject({ kind: 'install', manager: 'npm', lockfile: { file: 'package-lock.json' } });
    expect(dependencySetOf([pkg({ dependencies: { react: '^19.2.0' } }), { path: 'pnpm-lock.yaml', content: 'lockfileVersion: 9.0' }], builtin)).toMatchObject({ manager: 'pnpm' });
    expect(dependencySetOf([pkg({ dependencies: { react: '^19.2.0' } }), { path: 'yarn.lock', content: '' }], builtin)).toMatchObject({ manager: 'yarn' });
    // A lockfile below the root is some other package's.
    expect(dependencySetOf([pkg({ dependencies: { react: '^19.2.0' } }), { path: 'sub/package-lock.json', content: '{}' }], builtin)).toEqual({ kind: 'builtin' });
  });

  it('refuses what is not from a registry, naming the file and the field', () => {
    expect(refusal(() => dependencySetOf([pkg({ dependencies: { x: 'file:../../etc' } })], builtin))).toMatch(/^package\.json: dependencies\.x is "file:\.\.\/\.\.\/etc"/);
    expect(refusal(() => dependencySetOf([pkg({ devDependencies: { y: 'github:user/repo' } })], builtin))).toMatch(/devDependencies\.y/);
    expect(refusal(() => dependencySetOf([pkg({ dependencies: { z: 'https://example.com/z.tgz' } })], builtin))).toMatch(/dependencies\.z/);
    expect(refusal(() => dependencySetOf([pkg({ dependencies: { w: 'user/repo' } })], builtin))).toMatch(/dependencies\.w/);
    const lock = { packages: { 'node_modules/evil': { resolved: 'file:/etc/passwd' } } };
    expect(refusal(() => dependencySetOf([pkg({ dependencies: { evil: '1.0.0' } }), { path: 'package-lock.json', content: JSON.stringify(lock) }], builtin))).toMatch(
      /^package-lock\.json: "node_modules\/evil" is not from a registry/,
    );
  });

  it('says what is wrong with a package.json that is not valid', () => {
    expect(refusal(() => dependencySetOf([{ path: 'package.json', content: '{ "dependencies": ' }], builtin))).toMatch(/^package\.json is not valid JSON/);
    expect(refusal(() => dependencySetOf([pkg({ dependencies: { react: 19 } })], builtin))).toMatch(/^package\.json: dependencies\.react /);
    expect(refusal(() => dependencySetOf([pkg({ workspaces: ['a'] })], builtin))).toMatch(/workspaces/);
  });
});

describe('lockfiles other than npm\'s', () => {
  const set = (lockfile: string, content: string) => dependencySetOf([pkg({ dependencies: { a: '^1.0.0' } }), { path: lockfile, content }], builtin);
  const refused = (lockfile: string, content: string) => refusal(() => set(lockfile, content));
  const yarnEntry = (key: string, resolved?: string) => `${key}:\n  version "1.0.0"\n${resolved ? `  resolved "${resolved}"\n` : ''}  integrity sha512-x==\n`;
  const berryEntry = (key: string, resolution: string) => `__metadata:\n  version: 8\n  cacheKey: 10c0\n\n"${key}":\n  version: 1.0.0\n  resolution: "${resolution}"\n  languageName: node\n  linkType: hard\n`;
  const bunLock = (entry: unknown[]) => `{\n  "lockfileVersion": 1,\n  "workspaces": { "": { "name": "p", "dependencies": { "a": "^1.0.0", }, }, },\n  "packages": {\n    "a": ${JSON.stringify(entry)},\n  }\n}\n`;

  it('reads each manager\'s committed fixture: every entry from a registry, the locked version not the range\'s newest', async () => {
    const fixtures = FIXTURE_PROJECTS_DIR;
    for (const [fixture, lockfile, version] of [['pnpm-lockfile', 'pnpm-lock.yaml', '5.0.9'], ['yarn-lockfile', 'yarn.lock', '5.0.8'], ['yarn-berry-lockfile', 'yarn.lock', '5.0.6'], ['bun-lockfile', 'bun.lock', '5.0.7']]) {
      const content = readFileSync(join(fixtures, fixture, lockfile), 'utf8');
      expect(set(lockfile, content)).toMatchObject({ kind: 'install', lockfile: { file: lockfile } });
      const locked = lockedPackagesOf(lockfile, content);
      expect(locked.filter((entry) => entry.notFromRegistry !== undefined)).toEqual([]);
      expect(locked.find((entry) => entry.name === 'nanoid' && entry.version.startsWith('5.'))?.version).toBe(version);
    }
  });

  it('pnpm-lock.yaml: refuses links, folders, git and tarball URLs, naming the entry', () => {
    const importer = (version: string) => `lockfileVersion: '9.0'\nimporters:\n  .:\n    dependencies:\n      a:\n        specifier: ^1.0.0\n        version: ${version}\n`;
    expect(refused('pnpm-lock.yaml', importer('link:../a'))).toBe('pnpm-lock.yaml: "a@link:../a" is not from a registry (link:../a): only registry packages are installed in a preview');
    expect(refused('pnpm-lock.yaml', importer('file:../a'))).toMatch(/^pnpm-lock\.yaml: "a@file:\.\.\/a"/);
    const packages = (resolution: string) => `lockfileVersion: '9.0'\npackages:\n  a@1.0.0:\n    resolution: ${resolution}\n`;
    expect(refused('pnpm-lock.yaml', packages('{tarball: https://example.com/a.tgz}'))).toMatch(/^pnpm-lock\.yaml: "a@1\.0\.0" is not from a registry \(https:\/\/example\.com\/a\.tgz\)/);
    expect(refused('pnpm-lock.yaml', packages('{commit: abc, repo: https://github.com/u/a, type: git}'))).toMatch(/"a@1\.0\.0" is not from a registry \(git https:\/\/github\.com\/u\/a\)/);
    expect(refused('pnpm-lock.yaml', packages('{directory: ../a, type: directory}'))).toMatch(/\(folder \.\.\/a\)/);
    expect(refused('pnpm-lock.yaml', `lockfileVersion: '9.0'\nimporters:\n  .: {}\n  packages/b: {}\n`)).toMatch(/"packages\/b" is not from a registry \(a workspace package\)/);
    expect(set('pnpm-lock.yaml', packages('{integrity: sha512-x==}'))).toMatchObject({ manager: 'pnpm' });
    expect(refused('pnpm-lock.yaml', 'a: [')).toMatch(/^pnpm-lock\.yaml is not valid YAML/);
  });

  it('yarn.lock (yarn 1): refuses what is not a registry tarball, and file:, link:, portal:, patch:, git and URL patterns', () => {
    const registry = 'https://registry.yarnpkg.com/a/-/a-1.0.0.tgz#abc';
    expect(set('yarn.lock', yarnEntry('a@^1.0.0', registry))).toMatchObject({ manager: 'yarn' });
    expect(set('yarn.lock', yarnEntry('"@s/a@^1.0.0", "@s/a@^1.0.1"', 'https://registry.npmjs.org/@s/a/-/a-1.0.0.tgz'))).toMatchObject({ manager: 'yarn' });
    expect(refused('yarn.lock', yarnEntry('a@^1.0.0', 'https://codeload.github.com/u/a/tar.gz/abc'))).toBe(
      'yarn.lock: "a@^1.0.0" is not from a registry (https://codeload.github.com/u/a/tar.gz/abc): only registry packages are installed in a preview',
    );
    expect(refused('yarn.lock', yarnEntry('"a@file:../a"', 'file:../a'))).toMatch(/"a@file:\.\.\/a" is not from a registry \(file:\.\.\/a\)/);
    expect(refused('yarn.lock', yarnEntry('"a@link:../a"'))).toMatch(/\(link:\.\.\/a\)/);
    expect(refused('yarn.lock', yarnEntry('"a@git+https://github.com/u/a.git"', 'git+https://github.com/u/a.git#abc'))).toMatch(/\(git\+https:/);
    expect(refused('yarn.lock', yarnEntry('"a@https://example.com/a/-/a-1.0.0.tgz"', 'https://example.com/a/-/a-1.0.0.tgz'))).toMatch(/\(https:\/\/example\.com/);
    expect(refused('yarn.lock', yarnEntry('a@^1.0.0', 'https://registry.yarnpkg.com/b/-/b-1.0.0.tgz'))).toMatch(/\(https:\/\/registry\.yarnpkg\.com\/b\//);
    for (const spec of ['portal:../a', 'patch:a@1.0.0#./a.patch']) expect(refused('yarn.lock', yarnEntry(`"a@${spec}"`, registry))).toContain(`(${spec})`);
  });

  it('yarn.lock (yarn 2+): registry resolutions and yarn\'s built-in patches pass; portals, links, files, user patches, git, workspaces do not', () => {
    expect(set('yarn.lock', berryEntry('a@npm:^1.0.0', 'a@npm:1.0.0'))).toMatchObject({ manager: 'yarn' });
    const builtinPatch = 'typescript@patch:typescript@npm%3A5.9.3#optional!builtin<compat/typescript>::version=5.9.3&hash=5786d5';
    expect(set('yarn.lock', berryEntry('typescript@patch:typescript@npm%3A^5.9.3#optional!builtin<compat/typescript>', builtinPatch))).toMatchObject({ manager: 'yarn' });
    for (const resolution of ['a@portal:../a::locator=p%40workspace%3A.', 'a@link:../a::locator=p%40workspace%3A.', 'a@file:../a#../a::hash=1&locator=p%40workspace%3A.', 'a@patch:a@npm%3A1.0.0#~/.yarn/patches/a.patch::version=1.0.0&hash=1', 'a@https://github.com/u/a.git#commit=abc', 'a@npm:1.0.0::__archiveUrl=https%3A%2F%2Fexample.com%2Fa.tgz']) {
      expect(refused('yarn.lock', berryEntry('a@x', resolution))).toBe(`yarn.lock: "a@x" is not from a registry (${resolution.slice(2)}): only registry packages are installed in a preview`);
    }
    expect(refused('yarn.lock', berryEntry('b@workspace:packages/b', 'b@workspace:packages/b'))).toMatch(/\(a workspace package\)/);
  });

  it('bun.lock: registry versions pass (any registry: the install uses the configured one); folders, links, git, URLs and workspaces do not', () => {
    expect(set('bun.lock', bunLock(['a@1.0.0', '', {}, 'sha512-x==']))).toMatchObject({ manager: 'bun' });
    expect(set('bun.lock', bunLock(['a@1.0.0', 'https://npm.example.com/', {}, 'sha512-x==']))).toMatchObject({ manager: 'bun' });
    for (const version of ['file:../a', 'link:a', 'github:u/a#abc', 'git+https://github.com/u/a.git#abc', 'https://example.com/a.tgz', 'workspace:packages/a']) {
      expect(refused('bun.lock', bunLock([`a@${version}`, {}]))).toBe(`bun.lock: "a" is not from a registry (${version}): only registry packages are installed in a preview`);
    }
    expect(refused('bun.lock', '{ "packages": ')).toMatch(/^bun\.lock is not valid JSON/);
  });
});

describe('checkRegistrySpec', () => {
  it.each(['^1.2.3', '~1', '1.x', '*', '', 'latest', 'next', '>=1 <3', 'npm:vite@^5', 'npm:@scope/pkg@1.0.0'])('accepts %p', (spec) => {
    expect(() => checkRegistrySpec('dependencies', 'p', spec)).not.toThrow();
  });
  it.each(['file:x', 'link:x', 'git+ssh://x', 'git://x', 'workspace:*', 'http://x/y.tgz', 'a/b', 'npm:vite@file:x'])('refuses %p', (spec) => {
    expect(() => checkRegistrySpec('dependencies', 'p', spec)).toThrow(PermanentError);
  });
});
