import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { LocalMachineProvider } from '@velocity/machines';
import { APPS, builtMainOf, stopProcess, waitForHttp, type AppName } from '@velocity/ops';
import { freePort } from '@velocity/runtime';

const ROOT = resolve(__dirname, '../..');

export interface BenchSystem {
  baseUrl: string;
  apiPort: number;
  env: NodeJS.ProcessEnv;
  pids: Record<AppName, number>;
  machinesDir: string;
  /** The local provider over the system's machines folder (for pids, logs and destroying leftovers). */
  machines: LocalMachineProvider;
  /** The last lines each app wrote (logs go to files, not through this process). */
  tail(app: AppName, lines?: number): string;
  stop(): Promise<void>;
}

/**
 * api, provisioner and cleanup as real processes (the same entry points as
 * `npm start`), on the given database and queue prefix. Their logs go to files,
 * so the benchmark process does not spend its CPU reading them.
 */
export async function startBenchSystem(options: {
  databaseUrl: string;
  queuePrefix: string;
  env?: NodeJS.ProcessEnv;
  /** Extra node flags for the services (e.g. --cpu-prof, for looking into a result). */
  nodeArgs?: string[];
}): Promise<BenchSystem> {
  const apiPort = await freePort();
  const machinesDir = mkdtempSync(join(tmpdir(), 'vp-bench-machines-'));
  const logDir = mkdtempSync(join(tmpdir(), 'vp-bench-logs-'));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NODE_ENV: 'test',
    DATABASE_URL: options.databaseUrl,
    QUEUE_PREFIX: options.queuePrefix,
    API_HOST: '127.0.0.1',
    API_PORT: String(apiPort),
    PUBLIC_URL: '',
    API_INTERNAL_URL: '',
    LOCAL_MACHINES_DIR: machinesDir,
    ...options.env,
  };
  const logOf = (app: AppName) => join(logDir, `${app}.log`);
  const children = new Map<AppName, ChildProcess>();
  for (const app of APPS) {
    const fd = openSync(logOf(app), 'a');
    const child = spawn(process.execPath, [...(options.nodeArgs ?? []), builtMainOf(app)], {
      cwd: ROOT,
      env,
      stdio: ['ignore', fd, fd],
    });
    closeSync(fd);
    children.set(app, child);
  }
  const machines = new LocalMachineProvider({ dir: machinesDir });
  const tail = (app: AppName, lines = 15) => {
    try {
      return readFileSync(logOf(app), 'utf8').trim().split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  };
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await Promise.all([...children.values()].map((child) => stopProcess(child, 15_000)));
    const left = await machines.list().catch(() => []);
    await Promise.all(left.map((m) => machines.destroy(m.id)));
    rmSync(machinesDir, { recursive: true, force: true });
    rmSync(logDir, { recursive: true, force: true });
  };
  const baseUrl = `http://127.0.0.1:${apiPort}`;
  const dead = () => [...children.values()].some((c) => c.exitCode !== null || c.signalCode !== null);
  try {
    await waitForHttp(`${baseUrl}/health`, 60_000, dead);
    await waitForLog(() => tail('provisioner', 1000), /provisioner ready/, 60_000, dead);
    await waitForLog(() => tail('cleanup', 1000), /cleanup ready/, 60_000, dead);
  } catch (err) {
    const logs = APPS.map((app) => `--- ${app}\n${tail(app)}`).join('\n');
    await stop();
    throw new Error(`${(err as Error).message}\n${logs}`);
  }
  const pids = Object.fromEntries(APPS.map((app) => [app, children.get(app)!.pid!])) as Record<AppName, number>;
  return { baseUrl, apiPort, env, pids, machinesDir, machines, tail, stop };
}

async function waitForLog(read: () => string, pattern: RegExp, timeoutMs: number, dead: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (pattern.test(read())) return;
    if (dead()) throw new Error(`a service exited before it logged ${pattern}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${pattern}`);
}
