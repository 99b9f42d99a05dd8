import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dependencySetOf, type InstallSet } from '@velocity/contracts';
import { fixtureProjectFiles, useRegistryAndFolder } from '@velocity/testing';
import { DependencyCache } from './dependency-cache';
import { InstallError } from './installers/index';

jest.setTimeout(180_000);

/** A fixture's dependency set as the provisioner computes it (nothing counts as the service's own). */
async function setOf(fixture: string): Promise<InstallSet> {
  const files = (await fixtureProjectFiles(fixture)).map((file) => ({ path: file.path, content: file.content.toString('utf8') }));
  const set = dependencySetOf(files, () => undefined);
  if (set.kind !== 'install') throw new Error(`${fixture} has nothing to install`);
  return set;
}

const signal = () => AbortSignal.timeout(150_000);

describe('DependencyCache (npm, a real registry run locally)', () => {
  const env = useRegistryAndFolder('vp-deps-spec-');

  it('installs a set once, as declared, with progress; the second ask installs nothing', async () => {
    const cache = new DependencyCache(env.root, env.registry.url);
    const set = await setOf('vite-5');
    const progress: Array<{ packages: number; bytes: number }> = [];
    const first = await cache.ensure(set, { signal: signal(), onProgress: (p) => progress.push(p) });
    expect(first).toMatchObject({ key: set.key, dir: join(env.root, set.key), cached: false });
    expect(first.packages).toBeGreaterThan(5);
    expect(first.bytes).toBeGreaterThan(1_000_000);
    expect(progress.at(-1)).toEqual({ packages: first.packages, bytes: first.bytes });
    // The range says ^5: the registry's latest 5.x, not the service's own Vite 8.
    expect(JSON.parse(readFileSync(join(first.dir, 'node_modules', 'vite', 'package.json'), 'utf8')).version).toMatch(/^5\./);
    // No half install is left beside it, and no install script ran (esbuild's would write its binary path).
    expect(readdirSync(env.root).filter((name) => name.startsWith('.installing-'))).toEqual([]);

    const again = await cache.ensure(set, { signal: signal(), onProgress: (p) => progress.push(p) });
    expect(again).toMatchObject({ key: set.key, dir: first.dir, cached: true, packages: first.packages, bytes: first.bytes });
    // Another cache on the same folder (another provisioner) finds it too.
    expect(await new DependencyCache(env.root, env.registry.url).get(set.key)).toMatchObject({ cached: true, packages: first.packages });
  });

  it('installs exactly the lockfile\'s versions with npm ci', async () => {
    const set = await setOf('npm-lockfile');
    expect(set.lockfile?.file).toBe('package-lock.json');
    const installed = await new DependencyCache(env.root, env.registry.url).ensure(set, { signal: signal() });
    const lock = JSON.parse(set.lockfile!.content) as { packages: Record<string, { version?: string }> };
    const locked = Object.entries(lock.packages).filter(([path]) => path.startsWith('node_modules/') && !path.includes('/node_modules/', 1));
    expect(locked.length).toBeGreaterThan(0);
    for (const [path, entry] of locked) {
      const manifest = join(installed.dir, path, 'package.json');
      if (!existsSync(manifest)) continue; // an optional package of another platform
      expect(`${path}@${JSON.parse(readFileSync(manifest, 'utf8')).version}`).toBe(`${path}@${entry.version}`);
    }
  });

  it('two asks for one set at once share one install', async () => {
    const cache = new DependencyCache(env.root, env.registry.url);
    const set = await setOf('vite-6');
    const [a, b] = await Promise.all([cache.ensure(set, { signal: signal() }), cache.ensure(set, { signal: signal() })]);
    expect(a).toBe(b);
    expect(readdirSync(env.root).filter((name) => !name.startsWith('.'))).toEqual([set.key]);
  });

  it('names the missing package and the registry\'s message, and leaves nothing behind', async () => {
    const cache = new DependencyCache(env.root, env.registry.url);
    const set = await setOf('missing-package');
    const error = await cache.ensure(set, { signal: signal() }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InstallError);
    expect((error as InstallError).retryable).toBe(false);
    expect((error as Error).message).toMatch(/velocity-no-such-package-9d1c/);
    expect((error as Error).message).toMatch(/E404/);
    expect(await cache.get(set.key)).toBeNull();
    expect(readdirSync(env.root).filter((name) => name !== '.npm-cache')).toEqual([]);
  });

  it('a registry that does not answer is a failure worth retrying', async () => {
    const cache = new DependencyCache(env.root, 'http://127.0.0.1:9/');
    const error = await cache.ensure(await setOf('vite-7'), { signal: signal() }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InstallError);
    expect((error as InstallError).retryable).toBe(true);
    expect((error as Error).message).toMatch(/ECONNREFUSED/);
  });
});

describe('DependencyCache.evictUnused', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'vp-deps-evict-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  /** A complete set (its manifest last used `ageMs` ago) or a leftover install folder. */
  const make = (name: string, ageMs: number, manifest = true) => {
    const dir = join(root, name);
    mkdirSync(join(dir, 'node_modules'), { recursive: true });
    const touched = join(dir, manifest ? 'velocity-install.json' : 'node_modules');
    if (manifest) writeFileSync(touched, '{"key":"x","packages":1,"bytes":1,"ms":1}');
    const at = new Date(Date.now() - ageMs);
    utimesSync(manifest ? touched : dir, at, at);
  };

  it('removes sets unused for longer than it keeps them and dead installs; keeps the rest and what it does not know', async () => {
    const hour = 3600_000;
    make('a'.repeat(32), 40 * hour);
    make('b'.repeat(32), 2 * hour);
    make(`.installing-${'c'.repeat(32)}-0badf00d`, 40 * hour, false);
    make(`.installing-${'d'.repeat(32)}-0badf00d`, 1 * hour, false);
    mkdirSync(join(root, '.npm-cache'));
    make('e'.repeat(32), 40 * hour, false); // no manifest: not a set this cache made
    const cache = new DependencyCache(root, 'http://127.0.0.1:9/', 32 * hour);
    expect((await cache.evictUnused()).sort()).toEqual([`.installing-${'c'.repeat(32)}-0badf00d`, 'a'.repeat(32)]);
    expect(readdirSync(root).sort()).toEqual(['.installing-' + 'd'.repeat(32) + '-0badf00d', '.npm-cache', 'b'.repeat(32), 'e'.repeat(32)]);
    // A use touches the set: read now, it is kept however old it was.
    make('f'.repeat(32), 40 * hour);
    expect(await cache.get('f'.repeat(32))).toMatchObject({ cached: true });
    expect(await cache.evictUnused()).toEqual([]);
  });
});
