import { PermanentError } from './errors';
import { checkRegistrySpec, dependencySetOf, type InstalledVersion } from './dependency-set';

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

describe('checkRegistrySpec', () => {
  it.each(['^1.2.3', '~1', '1.x', '*', '', 'latest', 'next', '>=1 <3', 'npm:vite@^5', 'npm:@scope/pkg@1.0.0'])('accepts %p', (spec) => {
    expect(() => checkRegistrySpec('dependencies', 'p', spec)).not.toThrow();
  });
  it.each(['file:x', 'link:x', 'git+ssh://x', 'git://x', 'workspace:*', 'http://x/y.tgz', 'a/b', 'npm:vite@file:x'])('refuses %p', (spec) => {
    expect(() => checkRegistrySpec('dependencies', 'p', spec)).toThrow(PermanentError);
  });
});
