import { chmodSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { uploadProject } from '../../libs/shared/test/projects';
import { fixtureProjectFiles, startTestRegistry } from '../../libs/shared/test/test-registry';
import { runSession, type SessionRun } from './client';
import { startBenchSystem, type BenchSystem } from './services';

/** Runs of the dependencies part: the generated app (its own dependencies and config) beside the React template, cold. */
export interface DependencyRuns {
  uncached: SessionRun[];
  cached: SessionRun[];
  templateCold: SessionRun[];
}

/**
 * The generated app's time to ready with its dependencies uncached (the cache
 * folder emptied before each run, npm's own cache too; the registry is the
 * local test registry) and cached, and the React template's cold time in the
 * same system for comparison. Every session is stopped before the next.
 */
export async function measureDependencies(
  options: { databaseUrl: string; queuePrefix: string; uncached: number; cached: number; template: number },
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
  try {
    const projectId = await uploadProject(sys.baseUrl, 'bench generated app', 'react', await fixtureProjectFiles('generated-app'));
    const run = async (what: string, projectId?: string) => {
      const r = await runSession(sys.baseUrl, { fetchUrl: true, timeoutMs: 300_000, projectId });
      log(`     ${what}: ready ${r.readyMs.toFixed(0)} ms (install ${(r.steps['install-dependencies'] ?? 0).toFixed(0)} ms)`);
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
    return { uncached, cached, templateCold };
  } finally {
    await sys.stop();
    await registry.stop();
    rmSync(cacheDir, { recursive: true, force: true });
  }
}
