import { chmodSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { WarmPool } from '@velocity/machines';
import { sleep } from '@velocity/contracts';
import { uploadProject, fixtureProjectFiles, startTestRegistry } from '@velocity/testing';
import { runSession, type SessionRun } from './client';
import { startBenchSystem, type BenchSystem } from './services';

/** Runs of the dependencies part: the generated app (its own dependencies and config) beside the React template, cold. */
export interface DependencyRuns {
  uncached: SessionRun[];
  cached: SessionRun[];
  templateCold: SessionRun[];
  /** Sessions that claimed a machine of the warm pool started on the app's dependency set. */
  pooled: SessionRun[];
}

/**
 * The generated app's time to ready with its dependencies uncached (the cache
 * folder emptied before each run, npm's own cache too; the registry is the
 * local test registry) and cached, and the React template's cold time in the
 * same system for comparison. Every session is stopped before the next.
 */
export async function measureDependencies(
  options: { databaseUrl: string; queuePrefix: string; uncached: number; cached: number; template: number; pooled: number },
  retire: (sys: BenchSystem, sessionIds: string[]) => Promise<void>,
  log: (msg: string) => void,
): Promise<DependencyRuns> {
  const registry = await startTestRegistry();
  const cacheDir = mkdtempSync(join(tmpdir(), 'vp-bench-dependencies-'));
  chmodSync(cacheDir, 0o755);
  const sys = await startBenchSystem({
    databaseUrl: options.databaseUrl,
    queuePrefix: options.queuePrefix,
    env: { MACHINE_PROVIDER: 'local', NPM_REGISTRY_URL: registry.url, DEPENDENCY_CACHE_DIR: cacheDir },
  });
  let stopped: Promise<void> | undefined;
  const stopSystem = () => (stopped ??= sys.stop());
  try {
    const projectId = await uploadProject(sys.baseUrl, 'bench generated app', 'react', await fixtureProjectFiles('generated-app'));
    const run = async (what: string, projectId?: string) => {
      const r = await runSession(sys.baseUrl, { fetchUrl: true, timeoutMs: 300_000, projectId });
      const steps = Object.entries(r.steps).map(([step, ms]) => `${step} ${ms}`).join(', ');
      log(`     ${what}: ready ${r.readyMs.toFixed(0)} ms (queue ${r.queueWaitMs} ms, ${steps})`);
      await retire(sys, [r.sessionId]);
      return r;
    };
    log('   warm-up: the template once (not counted)');
    await run('warm-up');
    const templateCold: SessionRun[] = [];
    for (let i = 0; i < options.template; i++) templateCold.push(await run(`template ${i + 1}/${options.template}`));
    const uncached: SessionRun[] = [];
    for (let i = 0; i < options.uncached; i++) {
      for (const entry of readdirSync(cacheDir)) rmSync(join(cacheDir, entry), { recursive: true, force: true });
      uncached.push(await run(`generated app, uncached ${i + 1}/${options.uncached}`, projectId));
    }
    const cached: SessionRun[] = [];
    for (let i = 0; i < options.cached; i++) cached.push(await run(`generated app, cached ${i + 1}/${options.cached}`, projectId));
    await stopSystem();
    const pooled = await measurePooled({ ...options, registryUrl: registry.url, cacheDir }, retire, log);
    return { uncached, cached, templateCold, pooled };
  } finally {
    await stopSystem();
    await registry.stop();
    rmSync(cacheDir, { recursive: true, force: true });
  }
}

/**
 * A system with DEPENDENCY_POOL=1x1 over the same (filled) dependency cache: a
 * first session of the app (not counted) makes its profile recent; before each
 * counted session the pool holds a machine of it, at rest.
 */
async function measurePooled(
  options: { databaseUrl: string; queuePrefix: string; pooled: number; registryUrl: string; cacheDir: string },
  retire: (sys: BenchSystem, sessionIds: string[]) => Promise<void>,
  log: (msg: string) => void,
): Promise<SessionRun[]> {
  const queuePrefix = `${options.queuePrefix}-pooled`;
  const sys = await startBenchSystem({
    databaseUrl: options.databaseUrl,
    queuePrefix,
    env: { MACHINE_PROVIDER: 'local', NPM_REGISTRY_URL: options.registryUrl, DEPENDENCY_CACHE_DIR: options.cacheDir, DEPENDENCY_POOL: '1x1', POOL_REFILL_EVERY_MS: '500' },
  });
  const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
  const pool = new WarmPool(redis, queuePrefix);
  try {
    const projectId = await uploadProject(sys.baseUrl, 'bench generated app, pooled', 'react', await fixtureProjectFiles('generated-app'));
    const run = async (what: string) => {
      const r = await runSession(sys.baseUrl, { fetchUrl: true, timeoutMs: 300_000, projectId });
      const steps = Object.entries(r.steps).map(([step, ms]) => `${step} ${ms}`).join(', ');
      log(`     ${what}: ready ${r.readyMs.toFixed(0)} ms (pooled: ${Boolean(r.pooled)}; queue ${r.queueWaitMs} ms, ${steps})`);
      await retire(sys, [r.sessionId]);
      return r;
    };
    await run('generated app, warm-up (makes its profile recent; not counted)');
    const runs: SessionRun[] = [];
    for (let i = 0; i < options.pooled; i++) {
      await waitForProfileMachine(pool);
      runs.push(await run(`generated app, from the pool ${i + 1}/${options.pooled}`));
    }
    return runs;
  } finally {
    redis.disconnect();
    await sys.stop();
  }
}

/** Until the pool holds a ready machine of a dependency profile, then a little longer, so its start-up is over. */
async function waitForProfileMachine(pool: WarmPool, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pool.members()).some((m) => m.profile && m.state === 'ready')) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for a pooled machine of the app's dependency set`);
    await sleep(200);
  }
  await sleep(3_000);
}
