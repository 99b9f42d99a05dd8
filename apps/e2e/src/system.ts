import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalMachineProvider } from '@velocity/machines';
import { SETTLED_EVENTS, sessionEventSchema, type SessionEvent } from '@velocity/contracts';
import { freePort, readSse } from '@velocity/runtime';
import { scratchDatabase, testQueuePrefix } from '@velocity/testing';
import { APPS, startApp, stopProcess, waitForHttp, type AppName } from '@velocity/ops';

export interface RunningSystem {
  baseUrl: string;
  /** A preview's URL: the root of its own origin, `http://<routeId>.localhost:<api port>/`. */
  previewUrlOf(routeId: string): string;
  env: NodeJS.ProcessEnv;
  machines: LocalMachineProvider;
  /** Output of each app, for a failing test to show. */
  output: Record<AppName, string[]>;
  /** The api, provisioner and cleanup processes, in APPS order (a test may check they are still running). */
  processes: ChildProcess[];
  /** Base URLs of the workers' operator servers (/metrics, /health, /ready), on free ports. */
  ops: { provisioner: string; cleanup: string };
  stop(): Promise<void>;
}

/**
 * Starts api, provisioner and cleanup as real processes on the per-run test
 * database and a queue prefix of their own; `stop()` ends them and destroys
 * every machine they made.
 */
export async function startSystem(overrides: NodeJS.ProcessEnv = {}): Promise<RunningSystem> {
  const port = await freePort();
  const [provisionerOpsPort, cleanupOpsPort] = [await freePort(), await freePort()];
  // A database of its own: this system's cleanup sweeps every row it sees.
  const database = await scratchDatabase('sys');
  const machinesDir = mkdtempSync(join(tmpdir(), 'vp-machines-'));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NODE_ENV: 'test',
    LOG_LEVEL: 'info',
    DATABASE_URL: database.url,
    QUEUE_PREFIX: testQueuePrefix(),
    API_PORT: String(port),
    LOCAL_MACHINES_DIR: machinesDir,
    DEPENDENCY_CACHE_DIR: process.env.VP_TEST_DEPENDENCIES_DIR ?? join(machinesDir, 'dependencies'),
    // Tests never reach the public registry: a test that installs starts a registry of its own (test-registry.ts).
    NPM_REGISTRY_URL: 'http://127.0.0.1:9/',
    PROVISIONER_METRICS_PORT: String(provisionerOpsPort),
    CLEANUP_METRICS_PORT: String(cleanupOpsPort),
    ...overrides,
  };
  const output = Object.fromEntries(APPS.map((app) => [app, [] as string[]])) as Record<AppName, string[]>;
  const children: ChildProcess[] = APPS.map((app) => {
    const child = startApp(app, env, 'pipe');
    const keep = (chunk: Buffer) => output[app].push(...chunk.toString().trim().split('\n'));
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    return child;
  });
  const machines = new LocalMachineProvider({ dir: machinesDir });
  const stop = async () => {
    await Promise.all(children.map((child) => stopProcess(child)));
    await Promise.all((await machines.list()).map((m) => machines.destroy(m.id)));
    rmSync(machinesDir, { recursive: true, force: true });
    await database.drop();
  };
  const baseUrl = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${baseUrl}/health`, 30_000, () => children.some((c) => c.exitCode !== null));
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n${JSON.stringify(output, null, 1)}`);
  }
  const ops = {
    provisioner: `http://127.0.0.1:${env.PROVISIONER_METRICS_PORT}`,
    cleanup: `http://127.0.0.1:${env.CLEANUP_METRICS_PORT}`,
  };
  const previewUrlOf = (routeId: string) => `http://${routeId}.localhost:${port}/`;
  return { baseUrl, previewUrlOf, env, machines, output, ops, processes: children, stop };
}

/**
 * Reads a session's events until it is settled (`ready`, `failed` or `ended`), then closes the stream (the api
 * keeps it open while the session lives); throws naming what it waited for on timeout.
 */
export async function eventsUntilTerminal(
  baseUrl: string,
  sessionId: string,
  timeoutMs = 60_000,
  headers: Record<string, string> = {},
): Promise<{ events: SessionEvent[]; ids: string[] }> {
  const res = await fetch(`${baseUrl}/v1/sessions/${sessionId}/events`, { headers, signal: AbortSignal.timeout(timeoutMs) }).catch(
    (err) => {
      throw new Error(`waiting for the events of session ${sessionId}: ${err.message}`);
    },
  );
  if (res.status !== 200 || !res.body) throw new Error(`events of ${sessionId} answered ${res.status}: ${await res.text()}`);
  const events: SessionEvent[] = [];
  const ids: string[] = [];
  try {
    for await (const frame of readSse(res.body)) {
      const event = sessionEventSchema.parse(JSON.parse(frame.data));
      events.push(event);
      ids.push(frame.id ?? '');
      if (SETTLED_EVENTS.includes(event.type)) return { events, ids };
    }
  } catch (err) {
    throw new Error(`Timed out after ${timeoutMs} ms waiting for ready, failed or ended of session ${sessionId}; got: ${events.map((e) => e.type).join(', ')} (${(err as Error).message})`);
  }
  throw new Error(`The events of session ${sessionId} closed before ready, failed or ended; got: ${events.map((e) => e.type).join(', ')}`);
}

export async function postSession(baseUrl: string, body: unknown) {
  const res = await fetch(`${baseUrl}/v1/sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

