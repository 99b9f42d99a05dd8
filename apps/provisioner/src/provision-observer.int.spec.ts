import { Queue } from 'bullmq';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { DEMO_PROJECT_ID, PermanentError, QueueName, TimeoutError, type ProvisionSessionJob } from '@velocity/contracts';
import { EventLog, ProvisionMetrics, createMetricsRegistry, createRedis, failureReason } from '@velocity/ops';
import { LocalMachineProvider } from '@velocity/machines';
import { PostgresSessionStore } from '@velocity/session-store';
import { createLogger } from '@velocity/runtime';
import { sampleValue, samples, testConfig } from '@velocity/testing';
import type { ProvisionDeps } from './provision-context';
import { metricsObserver } from './provision-observer';
import { ProvisionSession } from './provision-session';

/**
 * The provisioner's metrics as the use case feeds them through its observer,
 * with real Postgres, Redis and preview machines (no edge at PUBLIC_URL, so
 * verification times out): step durations where steps finish, failures and
 * retries by step and reason.
 */
describe('provisioning metrics (observer)', () => {
  const machinesDir = mkdtempSync(join(tmpdir(), 'vp-prov-metrics-'));
  // The machines' api accepts and never answers: a machine keeps waiting for its files (it would give up, and exit,
  // within seconds of a refused connection), so what ends each attempt is verification's own timeout.
  const silentSockets = new Set<Socket>();
  const silentApi = createServer((socket) => void silentSockets.add(socket.on('error', () => undefined)));
  const config = testConfig({ PUBLIC_URL: 'http://127.0.0.1:9', VERIFY_TIMEOUT_MS: 1000, LOCAL_MACHINES_DIR: machinesDir });
  const redis = createRedis(config.REDIS_URL);
  const store = new PostgresSessionStore(config.DATABASE_URL);
  const provider = new LocalMachineProvider({ dir: machinesDir, sandbox: 'none' });
  const events = new EventLog(redis, config.QUEUE_PREFIX, 60);
  const cleanupQueue = new Queue(QueueName.Cleanup, { connection: redis, prefix: config.QUEUE_PREFIX });
  const logger = createLogger('provisioner-test', 'silent');
  const registry = createMetricsRegistry('provisioner');
  const metrics = new ProvisionMetrics(registry);
  const deps: ProvisionDeps = { config, store, provider, events, cleanupQueue, logger, observer: metricsObserver(metrics) };
  const useCase = new ProvisionSession(deps);

  const job = (projectId = DEMO_PROJECT_ID): ProvisionSessionJob => ({ sessionId: randomUUID(), projectId, tier: 'free', requestedAt: Date.now() });
  const run = (data: ProvisionSessionJob, attempt: number, maxAttempts: number) =>
    useCase.execute({ job: data, attempt, maxAttempts, signal: new AbortController().signal, logger });

  beforeAll(async () => {
    await new Promise<void>((resolve) => silentApi.listen(0, '127.0.0.1', resolve));
    config.API_INTERNAL_URL = `http://127.0.0.1:${(silentApi.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await Promise.all((await provider.list()).map((m) => provider.destroy(m.id)));
    rmSync(machinesDir, { recursive: true, force: true });
    for (const socket of silentSockets) socket.destroy();
    await new Promise((resolve) => silentApi.close(resolve));
    await cleanupQueue.close();
    await store.close();
    redis.disconnect();
  });

  it('reasons are a closed set: timeout, permanent, transient', () => {
    expect(failureReason(new TimeoutError('x', 1))).toBe('timeout');
    expect(failureReason(new PermanentError('x'))).toBe('permanent');
    expect(failureReason(new Error('ECONNRESET'))).toBe('transient');
    expect(failureReason('a string')).toBe('transient');
  });

  it('a missing project: one failure at ensure-project, permanent; no step observed', async () => {
    expect((await run(job(randomUUID()), 1, 3)).status).toBe('failed');
    const text = await registry.metrics();
    expect(sampleValue(text, 'vp_provision_failures_total', { step: 'ensure-project', reason: 'permanent' })).toBe(1);
    expect(samples(text, 'vp_provision_retries_total')).toEqual([]);
    expect(samples(text, 'vp_provision_step_seconds_count')).toEqual([]);
  });

  it('a verification that times out: steps before it observed, a retry, then a final failure, both timeout', async () => {
    const data = job();
    expect((await run(data, 1, 2)).status).toBe('retry');
    expect((await run(data, 2, 2)).status).toBe('failed');
    const text = await registry.metrics();
    expect(sampleValue(text, 'vp_provision_retries_total', { step: 'verify-url', reason: 'timeout' })).toBe(1);
    expect(sampleValue(text, 'vp_provision_failures_total', { step: 'verify-url', reason: 'timeout' })).toBe(1);
    for (const step of ['ensure-project', 'commit-session', 'create-machine']) {
      expect(sampleValue(text, 'vp_provision_step_seconds_count', { step })).toBe(2);
      expect(sampleValue(text, 'vp_provision_step_seconds_sum', { step })).toBeGreaterThan(0);
    }
    expect(samples(text, 'vp_provision_step_seconds_count', { step: 'verify-url' })).toEqual([]);
    expect(sampleValue(text, 'vp_time_to_ready_seconds_count')).toBe(0);
  }, 30_000);
});
