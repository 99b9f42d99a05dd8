import { PROVISION_STEPS, DEMO_PROJECT_ID } from '@velocity/contracts';
import { requestSession } from '@velocity/runtime';
import { scratchDatabase, testQueuePrefix } from '@velocity/testing';
import { FaultCluster } from '../src/faults/cluster';
import { runTrial } from '../src/faults/trial';
import { FAULT_ENV, SETTLE_MS, apiReplicaKilled, killAtStep, postgresOutage, providerFaults, redisRestart } from '../src/faults/scenarios';
import type { TrialRow } from '../src/faults/trial';

/**
 * The quick cases of the fault suite (`npm run faults` runs them all, with
 * more trials). The promise: every session ends active or error, no machine
 * without a live session, never two machines for one session, no client left waiting.
 */
function expectPromiseKept(row: TrialRow) {
  expect(row.problems).toEqual([]);
  expect(row).toMatchObject({ stuck: 0, orphanMachines: 0, duplicateMachines: 0, clientsLeftWaiting: 0 });
  expect(row.active + row.error).toBe(row.asked);
}

describe('provisioning under faults', () => {
  let cluster: FaultCluster;
  let database: Awaited<ReturnType<typeof scratchDatabase>>;

  beforeAll(async () => {
    database = await scratchDatabase('faults');
    cluster = await FaultCluster.start({
      databaseUrl: database.url,
      queuePrefix: testQueuePrefix('faults'),
      provisioners: 2,
      apis: 2,
      env: FAULT_ENV,
    });
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
    await database?.drop();
  }, 60_000);

  it.each(['create-machine', 'verify-url'] as const)('survives kill -9 of the provisioner at %s', async (step) => {
    const row = await killAtStep(cluster, step, 1);
    expectPromiseKept(row);
    expect(row.active).toBe(1);
  }, 90_000);

  it('hands its jobs back on SIGTERM: the provisioner exits 0 and another finishes the session', async () => {
    const row = await runTrial(cluster, {
      fault: 'SIGTERM to the provisioner mid-provisioning',
      sessions: 1,
      settleMs: SETTLE_MS,
      async inject({ sessionIds: [sessionId], waitForEvent }) {
        await waitForEvent(sessionId, (e) => e.type === 'progress' && e.step === 'create-machine' && e.state === 'started');
        const child = await cluster.killProvisionerOf(sessionId, 'SIGTERM');
        if (!child) throw new Error('no provisioner held the session');
        const exit = await new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
        expect(exit).toBe(0);
        await cluster.startProvisioner();
      },
    });
    expectPromiseKept(row);
    expect(row.active).toBe(1);
  }, 90_000);

  it('survives an api replica killed while clients wait on SSE', async () => {
    const row = await apiReplicaKilled(cluster, 4);
    expectPromiseKept(row);
    expect(row.active).toBe(4);
    // The balancer spread the clients over both replicas: those on the killed one resumed elsewhere.
    expect(row.clientReconnects).toBeGreaterThan(0);
  }, 90_000);

  it('resumes a one-request session (the POST answered with its events) on the other replica when its api is killed', async () => {
    const [first, second] = cluster.apiPorts.map((port) => `http://127.0.0.1:${port}`);
    // An earlier case may have killed the first replica.
    const up = await fetch(`${first}/health`).then((res) => res.ok, () => false);
    if (!up) await cluster.startApi(cluster.apiPorts[0]);
    let killed = false;
    const result = await requestSession({
      baseUrls: [first, second],
      projectId: DEMO_PROJECT_ID,
      timeoutMs: 60_000,
      onEvent: (event) => {
        // The api that answered the POST dies right after the first event.
        if (!killed && event.type === 'queued') {
          killed = true;
          cluster.killApi(0);
        }
      },
    });
    expect(killed).toBe(true);
    expect(result.reconnects).toBeGreaterThan(0);
    expect(result.events[0]).toMatchObject({ type: 'queued', sessionId: result.sessionId });
    expect(result.events.at(-1)?.type).toBe('ready');
    // Resumed after the last id it had: nothing twice, nothing missed.
    expect(new Set(result.ids).size).toBe(result.ids.length);
    expect(result.events.filter((e) => e.type === 'progress' && e.state === 'done')).toHaveLength(PROVISION_STEPS.length);
    await fetch(`${second}/v1/sessions/${result.sessionId}`, { method: 'DELETE' });
    await cluster.startApi(cluster.apiPorts[0]);
  }, 90_000);

  it('survives Postgres unreachable for 2 s mid-provisioning', async () => {
    const row = await postgresOutage(cluster, 3, 2000);
    expectPromiseKept(row);
  }, 90_000);

  it('survives a Redis restart mid-provisioning', async () => {
    const row = await redisRestart(cluster, 3);
    expectPromiseKept(row);
  }, 90_000);
});

describe('provisioning with a provider that fails some creates', () => {
  let cluster: FaultCluster;
  let database: Awaited<ReturnType<typeof scratchDatabase>>;

  beforeAll(async () => {
    database = await scratchDatabase('faults');
    cluster = await FaultCluster.start({
      databaseUrl: database.url,
      queuePrefix: testQueuePrefix('faults-provider'),
      provisioners: 1,
      apis: 1,
      env: { ...FAULT_ENV, FAULTS: 'fail-create=0.4' },
    });
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
    await database?.drop();
  }, 60_000);

  it('retries failed creates and never leaves a session stuck', async () => {
    const row = await providerFaults(cluster, 'provider fails 40% of creates', 4);
    expectPromiseKept(row);
  }, 90_000);
});
