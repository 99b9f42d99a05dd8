import { Queue, type Worker } from 'bullmq';
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'pg';
import { EventLog, createRedis, deleteKeysWithPrefix, enqueue, stopProcess } from '@velocity/ops';
import { QueueName, jobs, resourceLimitsOf, type Config, type SessionStatus, type Tier } from '@velocity/contracts';
import { LocalMachineProvider, type Machine, type MachineProvider, type MachineSpec } from '@velocity/machines';
import { PostgresSessionStore, type PreviewSession } from '@velocity/session-store';
import { createLogger, freePort } from '@velocity/runtime';
import { scratchDatabase, testConfig, startTestApi } from '@velocity/testing';
import type { CleanupDeps } from '../src/cleanup-deps';
import { createCleanupWorker, type CleanupWorkerOptions } from '../src/cleanup-worker';

/** A light real process as a preview machine: it answers the provider's /health probe (on its socket when sandboxed), and nothing else. */
export const LIGHT_MACHINE = [
  process.execPath,
  '-e',
  "require('http').createServer((q,s)=>s.end('ok')).listen(process.env.LISTEN_SOCKET||process.env.PORT,'127.0.0.1')",
];

/**
 * A real provider that counts destroy() calls per machine, so a test can say
 * "each machine was destroyed exactly once". It only delegates.
 */
export class CountingProvider implements MachineProvider {
  readonly name: string;
  constructor(readonly inner: MachineProvider, readonly destroyCalls: Map<string, number> = new Map()) {
    this.name = inner.name;
  }
  get isolation() {
    return this.inner.isolation;
  }
  get machineApiUrl() {
    return this.inner.machineApiUrl;
  }
  create(spec: MachineSpec, signal?: AbortSignal) {
    return this.inner.create(spec, signal);
  }
  waitStarted(machine: Machine, timeoutMs: number, signal?: AbortSignal) {
    return this.inner.waitStarted(machine, timeoutMs, signal);
  }
  get(machineId: string) {
    return this.inner.get(machineId);
  }
  findBySession(sessionId: string) {
    return this.inner.findBySession(sessionId);
  }
  async destroy(machineId: string) {
    this.destroyCalls.set(machineId, (this.destroyCalls.get(machineId) ?? 0) + 1);
    await this.inner.destroy(machineId);
  }
  list() {
    return this.inner.list();
  }
  close() {
    return this.inner.close();
  }
}

export interface Harness {
  config: Config;
  /** The deps of "this" cleanup replica; `replica()` makes more with their own connections. */
  deps: CleanupDeps;
  provider: CountingProvider;
  /** Raw SQL on the harness database, to backdate rows. */
  sql: Pool;
  destroyCalls: Map<string, number>;
  /** A fresh set of deps (own pool, provider instance, Redis connection, queues) on the same database, prefix and machines. */
  replica(): CleanupDeps;
  startWorker(deps?: CleanupDeps, options?: CleanupWorkerOptions): Promise<Worker>;
  activeSession(options?: { ttlSeconds?: number; tier?: Tier; expiryJob?: boolean; machine?: boolean }): Promise<{ session: PreviewSession; machine: Machine | null }>;
  provisioningSession(status: Extract<SessionStatus, 'queued' | 'creating' | 'starting'>, options?: { machine?: boolean }): Promise<{ session: PreviewSession; machine: Machine | null }>;
  /** A machine with no session row at all. */
  strayMachine(): Promise<Machine>;
  eventsOf(sessionId: string): Promise<{ type: string; reason?: string; retryable?: boolean }[]>;
  /**
   * The api as a real process on the harness database and prefix (Nest's bullmq
   * module cannot load inside Jest); stopped by close(). Returns its base URL.
   */
  startApi(): Promise<string>;
  close(): Promise<void>;
}

/**
 * Cleanup's sweep acts on every row of its database, so a spec that sweeps gets
 * a database of its own (created and migrated here, dropped by close()): it must
 * not end or reap the rows other spec files are using. Keys live under the run's
 * prefix (removed by close(), and by the global teardown anyway).
 */
export async function createHarness(overrides: Record<string, string | number | undefined> = {}): Promise<Harness> {
  const database = await scratchDatabase('cl');
  const databaseUrl = database.url;
  const machinesDir = mkdtempSync(join(tmpdir(), 'vp-cleanup-'));
  const config = testConfig({ DATABASE_URL: databaseUrl, LOCAL_MACHINES_DIR: machinesDir, ...overrides });
  const destroyCalls = new Map<string, number>();
  const closers: (() => Promise<unknown>)[] = [];
  const workers: Worker[] = [];
  const apis: ChildProcess[] = [];
  const logger = createLogger('cleanup-test', config.LOG_LEVEL);

  function replica(): CleanupDeps & { store: PostgresSessionStore } {
    const redis = createRedis(config.REDIS_URL);
    const store = new PostgresSessionStore(config.DATABASE_URL);
    const provider = new CountingProvider(new LocalMachineProvider({ dir: machinesDir, command: LIGHT_MACHINE }), destroyCalls);
    const sessionsQueue = new Queue(QueueName.Sessions, { connection: redis, prefix: config.QUEUE_PREFIX });
    const cleanupQueue = new Queue(QueueName.Cleanup, { connection: redis, prefix: config.QUEUE_PREFIX });
    const events = new EventLog(redis, config.QUEUE_PREFIX, 600);
    closers.push(async () => {
      await Promise.all([sessionsQueue.close(), cleanupQueue.close()]);
      await store.close();
      redis.disconnect();
    });
    return { config, store, provider, events, logger, redis, sessionsQueue, cleanupQueue };
  }

  const deps = replica();
  const provider = deps.provider as CountingProvider;
  const sql = new Pool({ connectionString: databaseUrl, max: 2 });

  async function newMachine(sessionId: string, projectId: string): Promise<Machine> {
    const created = await provider.create({ sessionId, projectId, templateType: 'react', resourceLimits: resourceLimitsOf('free'), env: {} });
    return provider.waitStarted(created, 15_000);
  }

  async function newSession(tier: Tier, status: 'queued' | 'creating') {
    const project = await deps.store.ensureProject({ id: randomUUID(), name: 'cleanup test', templateType: 'react' });
    return deps.store.createSession({ id: randomUUID(), projectId: project.id, tier, resourceLimits: resourceLimitsOf(tier), status });
  }

  const harness: Harness = {
    config,
    deps,
    provider,
    sql,
    destroyCalls,
    replica,
    async startWorker(workerDeps = deps, options = {}) {
      const connection = createRedis(config.REDIS_URL);
      const worker = createCleanupWorker(workerDeps, connection, options);
      worker.on('error', () => undefined);
      workers.push(worker);
      closers.push(async () => connection.disconnect());
      await worker.waitUntilReady();
      return worker;
    },
    async activeSession({ ttlSeconds = 60, tier = 'free', expiryJob = true, machine: withMachine = true } = {}) {
      const session = await newSession(tier, 'creating');
      const machine = withMachine ? await newMachine(session.id, session.projectId) : null;
      await deps.store.transition(session.id, 'starting', {
        containerId: machine?.id ?? `local-${session.id}`,
        containerUrl: machine?.url ?? 'http://127.0.0.1:9',
      });
      const active = await deps.store.transition(session.id, 'active', { previewUrl: `http://127.0.0.1:9/p/${session.id}/`, ttlSeconds });
      if (!active?.expiresAt) throw new Error(`session ${session.id} did not become active`);
      if (expiryJob) {
        // As the provisioner's activate step schedules it.
        await enqueue(deps.cleanupQueue, jobs.expireSession(active.id, active.expiresAt));
      }
      return { session: active, machine };
    },
    async provisioningSession(status, { machine: withMachine = false } = {}) {
      let session = await newSession('free', status === 'queued' ? 'queued' : 'creating');
      const machine = withMachine ? await newMachine(session.id, session.projectId) : null;
      if (status === 'starting') {
        session = (await deps.store.transition(session.id, 'starting', {
          containerId: machine?.id ?? `local-${session.id}`,
          containerUrl: machine?.url ?? 'http://127.0.0.1:9',
        }))!;
      }
      return { session, machine };
    },
    async strayMachine() {
      return newMachine(randomUUID(), randomUUID());
    },
    async eventsOf(sessionId) {
      return (await deps.events.read(sessionId)).map(({ event }) => event as { type: string; reason?: string; retryable?: boolean });
    },
    async startApi() {
      const api = await startTestApi({ ...config, API_PORT: await freePort() });
      apis.push(api.child);
      return api.base;
    },
    async close() {
      await Promise.all(apis.map((api) => stopProcess(api)));
      await Promise.all(workers.map((w) => w.close()));
      await deps.cleanupQueue.removeJobScheduler('sweep-sessions').catch(() => false);
      await Promise.all((await provider.list()).map((m) => provider.inner.destroy(m.id)));
      rmSync(machinesDir, { recursive: true, force: true });
      await deleteKeysWithPrefix(deps.redis, `${config.QUEUE_PREFIX}:`);
      for (const close of closers.reverse()) await close().catch(() => undefined);
      await sql.end();
      await database.drop();
    },
  };
  return harness;
}

/** Polls `check` until it returns a truthy value; throws naming `what` after `timeoutMs`. */
export async function until<T>(check: () => Promise<T>, what: string, timeoutMs = 15_000, everyMs = 50): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
