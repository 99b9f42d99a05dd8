import { existsSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { createRequire } from 'node:module';
import { maxSatisfying } from 'semver';
import { dependencySetOf, lockedPackagesOf, type InstallSet } from '@velocity/contracts';
import { fixtureProjectFiles, useRegistryAndFolder } from '@velocity/testing';
import { DependencyCache } from '../dependency-cache';
import { InstallError } from './index';
import { yarnBerryEnvironment } from './yarn-berry';

jest.setTimeout(180_000);

/** Each lockfile fixture: its lockfile, and the nanoid it locks (older than the newest ^5.0.0 in the registry). */
const FIXTURES = [
  { fixture: 'pnpm-lockfile', lockfile: 'pnpm-lock.yaml', nanoid: '5.0.9', symlinked: true },
  { fixture: 'yarn-lockfile', lockfile: 'yarn.lock', nanoid: '5.0.8' },
  { fixture: 'yarn-berry-lockfile', lockfile: 'yarn.lock', nanoid: '5.0.6' },
  { fixture: 'bun-lockfile', lockfile: 'bun.lock', nanoid: '5.0.7' },
] as const;

/** A fixture's set as the provisioner computes it (nothing counts as the service's own), its files edited first. */
async function setOf(fixture: string, edit: (path: string, content: string) => string = (_path, content) => content): Promise<InstallSet> {
  const files = (await fixtureProjectFiles(fixture)).map((file) => ({ path: file.path, content: edit(file.path, file.content.toString('utf8')) }));
  const set = dependencySetOf(files, () => undefined);
  if (set.kind !== 'install') throw new Error(`${fixture} has nothing to install`);
  return set;
}

const signal = () => AbortSignal.timeout(150_000);
const versionIn = (dir: string) => JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).version as string;

/** Every symlink under `dir` (pnpm's layout is made of them). */
function symlinksIn(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isSymbolicLink())
    .map((entry) => join(entry.parentPath, entry.name));
}

/** The packages at the top of node_modules (`name` or `@scope/name`), with the version installed. */
function topLevelPackages(nodeModules: string): Array<{ name: string; version: string }> {
  const names = readdirSync(nodeModules)
    .filter((name) => !name.startsWith('.'))
    .flatMap((name) => (name.startsWith('@') ? readdirSync(join(nodeModules, name)).map((inner) => `${name}/${inner}`) : [name]));
  return names.filter((name) => existsSync(join(nodeModules, name, 'package.json'))).map((name) => ({ name, version: versionIn(join(nodeModules, name)) }));
}

describe.each(FIXTURES)('$fixture (a real registry run locally)', ({ fixture, lockfile, nanoid, ...layout }) => {
  const env = useRegistryAndFolder('vp-installers-spec-');

  it('installs exactly the locked versions, not the newest the ranges accept, with progress, and works renamed into place', async () => {
    const set = await setOf(fixture);
    expect(set.lockfile?.file).toBe(lockfile);
    const progress: Array<{ packages: number; bytes: number }> = [];
    const installed = await new DependencyCache(env.root, env.registry.url).ensure(set, { signal: signal(), onProgress: (p) => progress.push(p) });
    expect(installed).toMatchObject({ key: set.key, dir: join(env.root, set.key), cached: false });
    const nodeModules = join(installed.dir, 'node_modules');

    // The registry has a newer 5.x: the lockfile's is the one installed.
    const packument = (await (await fetch(new URL('nanoid', env.registry.url))).json()) as { versions: Record<string, unknown> };
    expect(maxSatisfying(Object.keys(packument.versions), '^5.0.0')).not.toBe(nanoid);
    expect(versionIn(join(nodeModules, 'nanoid'))).toBe(nanoid);
    const locked = lockedPackagesOf(lockfile, set.lockfile!.content);
    for (const { name, version } of topLevelPackages(nodeModules)) {
      expect(locked.some((entry) => entry.name === name && entry.version === version) ? `${name}@${version}` : `${name}@${version} (not locked)`).toBe(`${name}@${version}`);
    }

    expect(installed.packages).toBeGreaterThan(0);
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.at(-1)).toEqual({ packages: installed.packages, bytes: installed.bytes });

    // The set was installed in another folder and renamed: every link in it is relative, and resolving through them works.
    if ('symlinked' in layout) expect(symlinksIn(nodeModules).length).toBeGreaterThan(2);
    for (const link of symlinksIn(nodeModules)) expect(isAbsolute(readlinkSync(link)) ? `${link} -> ${readlinkSync(link)}` : link).toBe(link);
    if (existsSync(join(nodeModules, 'vite'))) {
      const fromVite = createRequire(join(nodeModules, 'vite', 'package.json'));
      expect(fromVite.resolve('rollup')).toContain(installed.dir);
      // No install script ran: esbuild's would have put its native binary in place of this script.
      const esbuild = join(fromVite.resolve('esbuild/package.json'), '..', 'bin', 'esbuild');
      expect(readFileSync(esbuild).subarray(0, 19).toString()).toBe('#!/usr/bin/env node');
    }
    // yarn 1 records the flags it ran with.
    if (existsSync(join(nodeModules, '.yarn-integrity'))) expect(JSON.parse(readFileSync(join(nodeModules, '.yarn-integrity'), 'utf8')).flags).toContain('ignoreScripts');
  });

  it('says the lockfile is not up to date with package.json, naming the dependency, before fetching anything', async () => {
    const set = await setOf(fixture, (path, content) => (path === 'package.json' ? content.replace('"nanoid": "^5.0.0"', '"nanoid": "^4.0.0"') : content));
    const error = await new DependencyCache(env.root, env.registry.url).ensure(set, { signal: signal() }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InstallError);
    expect((error as InstallError).retryable).toBe(false);
    expect((error as Error).message).toMatch(new RegExp(`^${lockfile.replace('.', '\\.')} is not up to date with package\\.json: .*nanoid`));
    expect((error as Error).message).toMatch(/\^4\.0\.0/);
    expect(readdirSync(env.root).filter((name) => name.startsWith('.installing-') || !name.startsWith('.'))).toEqual([]);
  });

  it('names the package the registry does not have, with the registry\'s answer', async () => {
    const missing = '5.0.99';
    const set = await setOf(fixture, (path, content) => (path === lockfile ? content.replace(new RegExp(`(?<![\\d.])${nanoid.replace(/\./g, '\\.')}(?!\\d)`, 'g'), missing) : content));
    const error = await new DependencyCache(env.root, env.registry.url).ensure(set, { signal: signal() }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InstallError);
    expect((error as InstallError).retryable).toBe(false);
    expect((error as Error).message).toMatch(/nanoid(@npm:|@|\/-\/nanoid-)5\.0\.99/);
    expect((error as Error).message).toMatch(/404|[Nn]ot [Ff]ound/);
  });
});

describe('lockfiles of older versions of the package managers', () => {
  const env = useRegistryAndFolder('vp-installers-spec-');

  it('yarn 2+: a lockfile in an older yarn\'s format is rewritten by this yarn, its versions kept', async () => {
    // yarn 4.0 wrote format 8 and checksums without their cache key; yarn 4.18 writes format 10.
    const set = await setOf('yarn-berry-lockfile', (path, content) => (path === 'yarn.lock' ? content.replace('  version: 10\n', '  version: 8\n').replace('checksum: 10c0/', 'checksum: ') : content));
    expect(set.lockfile!.content).toMatch(/^ {2}version: 8$/m);
    const installed = await new DependencyCache(env.root, env.registry.url).ensure(set, { signal: signal() });
    expect(versionIn(join(installed.dir, 'node_modules', 'nanoid'))).toBe('5.0.6');
  });

  it('pnpm: a lockfile older than pnpm 9\'s is refused, saying which pnpm to write it with', async () => {
    const set = await setOf('pnpm-lockfile', (path, content) => (path === 'pnpm-lock.yaml' ? content.replace("lockfileVersion: '9.0'", "lockfileVersion: '6.0'") : content));
    const error = await new DependencyCache(env.root, env.registry.url).ensure(set, { signal: signal() }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InstallError);
    expect((error as Error).message).toMatch(/^pnpm-lock\.yaml is lockfileVersion 6\.0, which pnpm 10\.\d+\.\d+ does not read: write it again with pnpm 9 or later$/);
  });
});

describe('yarn 2+', () => {
  it('is configured by environment alone (no installed file shows it): scripts off, no rc file, the configured registry', () => {
    expect(yarnBerryEnvironment({ registry: 'http://127.0.0.1:4873/', cacheDir: '/cache/.yarn-berry-cache' })).toMatchObject({
      YARN_ENABLE_SCRIPTS: 'false',
      YARN_RC_FILENAME: '.velocity-no-yarnrc.yml',
      YARN_IGNORE_PATH: '1',
      YARN_NPM_REGISTRY_SERVER: 'http://127.0.0.1:4873',
      YARN_UNSAFE_HTTP_WHITELIST: '127.0.0.1',
      YARN_NODE_LINKER: 'node-modules',
      YARN_CACHE_FOLDER: '/cache/.yarn-berry-cache/cache',
    });
  });
});
