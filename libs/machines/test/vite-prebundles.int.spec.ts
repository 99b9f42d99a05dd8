import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { MACHINE_VITE_CACHE_DIR, resourceLimitsOf } from '@velocity/contracts';
import { requestText } from '@velocity/runtime';
import { LocalMachineProvider } from '../src/local-machine-provider';
import { VitePrebundles } from '../src/vite-prebundles';

const REPO_ROOT = resolve(__dirname, '../../..');

describe('VitePrebundles', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vp-prebundles-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** A machine's cache folder with a `deps/` bundling, complete (its metadata written) or not. */
  function machineCache(name: string, complete: boolean, content = 'bundle'): string {
    const cache = join(dir, name, MACHINE_VITE_CACHE_DIR);
    mkdirSync(join(cache, 'deps'), { recursive: true });
    writeFileSync(join(cache, 'deps', 'react.js'), content);
    if (complete) writeFileSync(join(cache, 'deps', '_metadata.json'), JSON.stringify({ content }));
    return cache;
  }

  it('keeps only a complete bundling, the first one kept, and seeds a machine with a copy of it', async () => {
    const store = new VitePrebundles(join(dir, 'store'));
    const key = VitePrebundles.keyOf('/deps/node_modules', 'react');
    expect(await store.seed(key, join(dir, 'early', MACHINE_VITE_CACHE_DIR))).toBe(false);
    expect(await store.keep(key, machineCache('half', false))).toBe(false);
    expect(store.has(key)).toBe(false);

    expect(await store.keep(key, machineCache('first', true, 'first'))).toBe(true);
    expect(await store.keep(key, machineCache('second', true, 'second'))).toBe(true);
    const seeded = join(dir, 'machine', MACHINE_VITE_CACHE_DIR);
    expect(await store.seed(key, seeded)).toBe(true);
    expect(readFileSync(join(seeded, 'deps', 'react.js'), 'utf8')).toBe('first');
    // A copy: what the machine does to its own does not reach the store.
    writeFileSync(join(seeded, 'deps', 'react.js'), 'changed by the machine');
    expect(await store.seed(key, join(dir, 'next', MACHINE_VITE_CACHE_DIR))).toBe(true);
    expect(readFileSync(join(dir, 'next', MACHINE_VITE_CACHE_DIR, 'deps', 'react.js'), 'utf8')).toBe('first');
  });

  it('keys by dependency folder, its last change and template', () => {
    const folder = join(dir, 'node_modules');
    mkdirSync(folder);
    const key = VitePrebundles.keyOf(folder, 'react');
    expect(VitePrebundles.keyOf(folder, 'react')).toBe(key);
    expect(VitePrebundles.keyOf('/b/node_modules', 'react')).not.toBe(key);
    expect(VitePrebundles.keyOf(folder, 'vue')).not.toBe(key);
    // An install in place (npm writes its lockfile there) is another set of bundles.
    writeFileSync(join(folder, '.package-lock.json'), '{}');
    expect(VitePrebundles.keyOf(folder, 'react')).not.toBe(key);
  });
});

/**
 * The built preview container in bubblewrap sandboxes (the first of a set has a
 * pooled machine on the template's files pre-bundle its dependencies; the next
 * starts with a copy, which its Vite takes as it is).
 */
describe('LocalMachineProvider: pre-bundled dependencies shared by the sandboxed machines of a set', () => {
  let dir: string;
  let provider: LocalMachineProvider;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'vp-prebundle-machines-'));
    provider = new LocalMachineProvider({ dir, sandbox: 'bubblewrap' });
  });

  afterAll(async () => {
    for (const machine of await provider.list()) await provider.destroy(machine.id);
    await provider.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A pooled React machine (it needs no api: it starts on the template's files). */
  const pooledSpec = () => {
    const routeId = randomUUID();
    return {
      sessionId: routeId,
      projectId: '00000000-0000-0000-0000-000000000000',
      templateType: 'react',
      resourceLimits: resourceLimitsOf('free'),
      env: { ROUTE_ID: routeId, POOL_CLAIM_TOKEN: randomBytes(24).toString('hex'), TEMPLATE_TYPE: 'react' },
    };
  };

  async function untilHealthy(url: string): Promise<void> {
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if ((await requestText(`${url}/health`).catch(() => null))?.status === 200) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`Timed out after 60000 ms waiting for ${url}/health to answer 200`);
  }

  it('makes the bundles once, and the next machine serves its page on a copy that its Vite did not bundle again', async () => {
    const first = await provider.create(pooledSpec());
    await provider.prebundlesMade();
    const key = VitePrebundles.keyOf(realpathSync(join(REPO_ROOT, 'node_modules')), 'react');
    const kept = join(dir, '.prebundled', key, 'deps', '_metadata.json');
    expect(existsSync(kept)).toBe(true);
    const keptMetadata = readFileSync(kept, 'utf8');
    expect(JSON.parse(keptMetadata).optimized).toHaveProperty('react');
    // The first machine bundled its own (nothing to copy yet); the pre-bundling machine is gone.
    expect((await provider.list()).map((m) => m.id)).toEqual([first.id]);

    const spec = pooledSpec();
    const next = await provider.create(spec);
    const metadata = join(dir, spec.sessionId, 'work', MACHINE_VITE_CACHE_DIR, 'deps', '_metadata.json');
    await untilHealthy((await provider.waitStarted(next, 60_000)).url);
    // Bundling afresh would have written new metadata (a new browser hash): the copy was taken as it is.
    expect(readFileSync(metadata, 'utf8')).toBe(keptMetadata);
  }, 180_000);
});
