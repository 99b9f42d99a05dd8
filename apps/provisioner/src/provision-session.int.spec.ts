import { Queue } from 'bullmq';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { DEMO_PROJECT_ID, QueueName, type ProvisionSessionJob } from '@velocity/contracts';
import { EventLog, createRedis } from '@velocity/ops';
import { LocalMachineProvider } from '@velocity/machines';
import { PostgresSessionStore } from '@velocity/session-store';
import { createLogger } from '@velocity/runtime';
import { testConfig } from '@velocity/testing';
import type { ProvisionDeps } from './provision-context';
import { ProvisionSession } from './provision-session';

/**
 * The use case with real Postgres, Redis and preview machines. With no edge
 * listening at PUBLIC_URL, verification can never pass: the undo path runs for real.
 */
describe('ProvisionSession', () => {
  const machinesDir = mkdtempSync(join(tmpdir(), 'vp-prov-'));
  const config = testConfig({ PUBLIC_URL: 'http://127.0.0.1:9', VERIFY_TIMEOUT_MS: 1500, LOCAL_MACHINES_DIR: machinesDir });
  const redis = createRedis(config.REDIS_URL);
  const store = new PostgresSessionStore(config.DATABASE_URL);
  const provider = new LocalMachineProvider({ dir: machinesDir });
  const events = new EventLog(redis, config.QUEUE_PREFIX, 60);
  const cleanupQueue = new Queue(QueueName.Cleanup, { connection: redis, prefix: config.QUEUE_PREFIX });
  const logger = createLogger('provisioner-test', 'silent');
  const deps: ProvisionDeps = { config, store, provider, events, cleanupQueue, logger };
  const useCase = new ProvisionSession(deps);

  const job = (projectId = DEMO_PROJECT_ID): ProvisionSessionJob => ({
    sessionId: randomUUID(),
    projectId,
    tier: 'free',
    requestedAt: Date.now(),
  });
  const run = (data: ProvisionSessionJob, attempt: number, maxAttempts: number) =>
    useCase.execute({ job: data, attempt, maxAttempts, signal: new AbortController().signal, logger });
  const storedEvents = async (sessionId: string) => (await events.read(sessionId)).map((e) => e.event);

  afterAll(async () => {
    // First: the machine pre-bundling dependencies in the background, which only this provider knows of.
    await provider.close();
    await Promise.all((await provider.list()).map((m) => provider.destroy(m.id)));
    rmSync(machinesDir, { recursive: true, force: true });
    await cleanupQueue.close();
    await store.close();
    redis.disconnect();
  });

  it('fails at once, with no row and no machine, for a project that does not exist', async () => {
    const data = job(randomUUID());
    const outcome = await run(data, 1, 3);
    expect(outcome.status).toBe('failed');
    expect(await store.getSession(data.sessionId)).toBeNull();
    expect(await provider.findBySession(data.sessionId)).toBeNull();
    expect((await storedEvents(data.sessionId)).at(-1)).toMatchObject({
      type: 'failed',
      step: 'ensure-project',
      retryable: false,
      reason: expect.stringContaining('does not exist'),
    });
  });

  it('keeps the machine for the retry when attempts remain, then undoes everything on the last', async () => {
    const data = job();
    const first = await run(data, 1, 2);
    expect(first.status).toBe('retry');
    const kept = await provider.findBySession(data.sessionId);
    expect(kept?.state).toBe('started');
    expect(await store.getSession(data.sessionId)).toMatchObject({ status: 'starting', containerId: kept!.id });

    const last = await run(data, 2, 2);
    expect(last.status).toBe('failed');
    expect(await provider.findBySession(data.sessionId)).toBeNull();
    const row = await store.getSession(data.sessionId);
    expect(row).toMatchObject({ status: 'error', errorStep: 'verify-url' });
    // No api here: the wait runs out, or the machine gives up fetching its files first (its own, retryable exit).
    expect(row!.errorMessage).toMatch(/Timed out|the machine exited with code 75 while starting: start failed: Could not load project files/);
    const failed = (await storedEvents(data.sessionId)).at(-1);
    expect(failed).toMatchObject({ type: 'failed', step: 'verify-url', retryable: true });
    // The same machine served both attempts: one create, never a second machine.
    expect((await storedEvents(data.sessionId)).filter((e) => e.type === 'progress' && e.step === 'create-machine' && e.state === 'done')).toHaveLength(2);
  }, 30_000);

  it('refuses a project whose config file runs code when machines run without a sandbox, naming the file, and starts no machine', async () => {
    // This host as if bubblewrap were missing, MACHINE_SANDBOX=auto: machines would run unsandboxed.
    const unsandboxed = new LocalMachineProvider({ dir: machinesDir, sandbox: 'auto', bubblewrap: join(machinesDir, 'no-bwrap') });
    expect(unsandboxed.isolation).toBe('none');
    const refusing = new ProvisionSession({ ...deps, provider: unsandboxed });
    const project = await store.createProject({ name: 'with postcss', templateType: 'vanilla-ts' });
    await store.seedProjectFiles(project.id, [
      { path: 'index.html', content: '<!doctype html><script type="module" src="/main.ts"></script>' },
      { path: 'main.ts', content: 'import "./style.css";' },
      { path: 'style.css', content: 'body { color: red }' },
      { path: 'postcss.config.js', content: 'module.exports = { plugins: [] };' },
    ]);
    const data = job(project.id);
    const outcome = await refusing.execute({ job: data, attempt: 1, maxAttempts: 3, signal: new AbortController().signal, logger });
    expect(outcome.status).toBe('failed');
    expect(await unsandboxed.findBySession(data.sessionId)).toBeNull();
    expect((await storedEvents(data.sessionId)).at(-1)).toMatchObject({
      type: 'failed',
      step: 'create-machine',
      retryable: false,
      reason: expect.stringMatching(/^create-machine: postcss\.config\.js runs code in the preview machine, .*MACHINE_SANDBOX=none/),
    });

    // The operator allows it: the same project gets its machine (verification then times out here: no edge).
    const allowing = new ProvisionSession({ ...deps, config: { ...config, MACHINE_SANDBOX: 'none' }, provider: unsandboxed });
    const allowed = job(project.id);
    const attempt = await allowing.execute({ job: allowed, attempt: 1, maxAttempts: 2, signal: new AbortController().signal, logger });
    expect(attempt.status).toBe('retry');
    expect(await unsandboxed.findBySession(allowed.sessionId)).not.toBeNull();
    await unsandboxed.destroy(`local-${allowed.sessionId}`);
  }, 30_000);
});
