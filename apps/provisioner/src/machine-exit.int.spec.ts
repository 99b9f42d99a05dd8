import { Queue } from 'bullmq';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QueueName, provisioningLimitMs, templateFiles, type Config, type ProvisionSessionJob } from '@velocity/contracts';
import { EventLog, createRedis, stopProcess } from '@velocity/ops';
import { LocalMachineProvider } from '@velocity/machines';
import { PostgresSessionStore } from '@velocity/session-store';
import { createLogger, freePort } from '@velocity/runtime';
import { startTestApi, testConfig, type TestApi } from '@velocity/testing';
import type { ProvisionDeps } from './provision-context';
import { ProvisionSession } from './provision-session';

jest.setTimeout(90_000);

/** Waits far longer than the test allows: a failure that came from a poll running out would fail the test. */
const LONG_WAIT_MS = 60_000;
/** How soon an exit must fail the session: well before any wait runs out. */
const AT_ONCE_MS = 10_000;

/**
 * A preview machine that exits while it starts, for real: the provisioner's
 * pipeline with Postgres, Redis, a real api (files, edge) and sandboxed
 * machines. The session fails at once with the step that was running and how
 * the machine ended, said in one log line; an exit of the project's doing is
 * not retried, one by a signal is.
 */
describe('a machine that exits while starting', () => {
  const machinesDir = mkdtempSync(join(tmpdir(), 'vp-exit-'));
  const apiSocket = join(machinesDir, 'api', 'api.sock');
  let config: Config;
  let api: TestApi | undefined;
  let store: PostgresSessionStore;
  let events: EventLog;
  let cleanupQueue: Queue;
  let redis: ReturnType<typeof createRedis>;
  const providers: LocalMachineProvider[] = [];
  const logLines: string[] = [];
  const logger = createLogger('provisioner-test', 'info', { destination: { write: (line: string) => void logLines.push(line) } });

  beforeAll(async () => {
    config = testConfig({
      API_PORT: await freePort(),
      LOCAL_MACHINES_DIR: machinesDir,
      MACHINE_API_SOCKET: apiSocket,
      MACHINE_START_TIMEOUT_MS: LONG_WAIT_MS,
      VERIFY_TIMEOUT_MS: LONG_WAIT_MS,
    });
    api = await startTestApi(config);
    redis = createRedis(config.REDIS_URL);
    store = new PostgresSessionStore(config.DATABASE_URL, { max: 4 });
    events = new EventLog(redis, config.QUEUE_PREFIX, 60);
    cleanupQueue = new Queue(QueueName.Cleanup, { connection: redis, prefix: config.QUEUE_PREFIX });
  }, 60_000);

  afterAll(async () => {
    for (const provider of providers) {
      // First: a machine pre-bundling dependencies in the background, which only this provider knows of.
      await provider.close();
      await Promise.all((await provider.list()).map((m) => provider.destroy(m.id)));
    }
    if (api) await stopProcess(api.child);
    await cleanupQueue?.close();
    await store?.close();
    redis?.disconnect();
    rmSync(machinesDir, { recursive: true, force: true });
  });

  /** Machines of this provider's folder: the preview container, or `command` standing in for it. */
  const providerOf = (command?: string[]) => {
    const provider = new LocalMachineProvider({ dir: machinesDir, apiSocket, ...(command ? { command } : {}) });
    providers.push(provider);
    return provider;
  };

  /** One attempt of `attempts` at a session of a new project with `files` over the template's. */
  async function provision(provider: LocalMachineProvider, files: { path: string; content: string }[], attempts = 3, requestedAt = Date.now()) {
    const project = await store.createProject({ name: 'exits at start', templateType: 'vanilla-ts' });
    await store.seedProjectFiles(project.id, [...templateFiles('vanilla-ts'), ...files]);
    const job: ProvisionSessionJob = { sessionId: randomUUID(), projectId: project.id, tier: 'free', requestedAt };
    const deps: ProvisionDeps = { config, store, provider, events, cleanupQueue, logger };
    const started = Date.now();
    const outcome = await new ProvisionSession(deps).execute({ job, attempt: 1, maxAttempts: attempts, signal: new AbortController().signal, logger: logger.child({ sessionId: job.sessionId }) });
    const ms = Date.now() - started;
    const stored = (await events.read(job.sessionId)).map((e) => e.event);
    const linesSaying = (text: string) => logLines.filter((line) => line.includes(job.sessionId) && line.includes(text));
    return { job, outcome, ms, stored, linesSaying };
  }

  it("fails at once, not retried, naming the step it was in, when the project's vite.config ends the dev server's process", async () => {
    const provider = providerOf();
    expect(provider.isolation).toBe('sandbox');
    const { job, outcome, ms, stored, linesSaying } = await provision(provider, [{ path: 'vite.config.js', content: 'process.exit(1);\nexport default {};\n' }]);

    expect(outcome.status).toBe('failed');
    expect(ms).toBeLessThan(AT_ONCE_MS);
    const failed = stored.at(-1) as { step?: string };
    // The machine listens first and loads Vite after its files: it exits in create-machine when that is
    // quicker than its first /health answer reaches the provider, else in verify-url.
    expect(['create-machine', 'verify-url']).toContain(failed.step);
    const step = failed.step!;
    expect(failed).toMatchObject({ type: 'failed', retryable: false, reason: expect.stringMatching(new RegExp(`^${step}: the machine exited with code 1 while starting`)) });
    expect(await store.getSession(job.sessionId)).toMatchObject({ status: 'error', errorStep: step, errorMessage: expect.stringContaining('the machine exited with code 1 while starting') });
    expect(stored.filter((e) => e.type === 'progress' && e.state === 'started' && e.step === 'ensure-project')).toHaveLength(1);
    expect(linesSaying('exited with code 1')).toHaveLength(1);
    // The edge was asked a few times at most, not 20 times a second until a timeout.
    expect(api!.output.filter((line) => line.includes('edge proxy error') && line.includes(job.sessionId)).length).toBeLessThan(5);
    expect(await provider.findBySession(job.sessionId)).toBeNull();
  });

  it('fails create-machine at once, not retried, naming the exit code and what the machine said last', async () => {
    const provider = providerOf([process.execPath, '-e', "process.stderr.write('cannot start: the config is broken\\n'); process.exit(3)"]);
    const { job, outcome, ms, stored, linesSaying } = await provision(provider, []);

    expect(outcome.status).toBe('failed');
    expect(ms).toBeLessThan(AT_ONCE_MS);
    expect(stored.at(-1)).toMatchObject({
      type: 'failed',
      step: 'create-machine',
      retryable: false,
      reason: 'create-machine: the machine exited with code 3 while starting: cannot start: the config is broken',
    });
    expect(await store.getSession(job.sessionId)).toMatchObject({ status: 'error', errorStep: 'create-machine' });
    expect(linesSaying('exited with code 3')).toHaveLength(1);
  });

  it('retries a machine ended by a signal (not the project\'s doing), as the sandbox reports it', async () => {
    const provider = providerOf([process.execPath, '-e', "process.kill(process.pid, 'SIGKILL')"]);
    const { outcome, ms } = await provision(provider, [], 2);

    expect(outcome).toMatchObject({ status: 'retry', error: { message: expect.stringMatching(/^create-machine: the machine was ended by SIGKILL while starting/) } });
    expect(ms).toBeLessThan(AT_ONCE_MS);
  });

  it('fails for good, naming the step, when the next attempt would start past the provisioning deadline', async () => {
    const provider = providerOf([process.execPath, '-e', "process.kill(process.pid, 'SIGKILL')"]);
    // 600 ms left: less than this attempt and the backoff before the next (PROVISION_BACKOFF_MS, 500).
    const { outcome, stored } = await provision(provider, [], 3, Date.now() - provisioningLimitMs(config) + 600);

    expect(outcome.status).toBe('failed');
    expect(stored.at(-1)).toMatchObject({ type: 'failed', step: 'create-machine', retryable: true });
  });
});
