import { JobName } from '@velocity/contracts';
import { createHarness, type Harness } from '../test/harness';
import { ReapStuckSessions } from './reap-stuck-sessions';

// Real machines, real delays: more than Jest's default 5 s (testTimeout in jest.preset.js is not applied per project).
jest.setTimeout(30_000);

describe('ReapStuckSessions', () => {
  let h: Harness;

  beforeAll(async () => {
    h = await createHarness({ PROVISION_DEADLINE_MS: 2_000, INSTALL_TIMEOUT_MS: 1_000, CLEANUP_BATCH_SIZE: 2 });
  });

  afterAll(async () => {
    await h?.close();
  });

  /** Moves created_at back, as if the session had been asked for `ms` ago. */
  const age = (id: string, ms: number) =>
    h.sql.query(`update preview_sessions set created_at = now() - make_interval(secs => $2::double precision / 1000) where id = $1`, [id, ms]);

  it('fails a session stuck past the deadline: error at its status, machine destroyed, job removed, retryable failed event', async () => {
    const stuck = await h.provisioningSession('starting', { machine: true });
    await h.deps.sessionsQueue.add(JobName.ProvisionSession, { sessionId: stuck.session.id }, { jobId: stuck.session.id, delay: 60_000 });
    await age(stuck.session.id, 60_000);
    const queued = await h.provisioningSession('queued');
    await age(queued.session.id, 60_000);
    const fresh = await h.provisioningSession('creating', { machine: true });
    const active = await h.activeSession({ ttlSeconds: 600, expiryJob: false, machine: false });
    await age(active.session.id, 60_000);

    const reap = new ReapStuckSessions(h.deps, 1_000);
    expect(await reap.execute()).toEqual({ reaped: 2 });

    const row = await h.deps.store.getSession(stuck.session.id);
    expect(row).toMatchObject({ status: 'error', errorMessage: 'provisioning timed out at starting' });
    expect(await h.provider.get(stuck.machine!.id)).toBeNull();
    expect(h.destroyCalls.get(stuck.machine!.id)).toBe(1);
    expect(await h.deps.sessionsQueue.getJob(stuck.session.id)).toBeUndefined();
    expect(await h.eventsOf(stuck.session.id)).toEqual([
      expect.objectContaining({ type: 'failed', reason: 'provisioning timed out at starting', retryable: true }),
    ]);
    expect((await h.deps.store.getSession(queued.session.id))?.errorMessage).toBe('provisioning timed out at queued');

    // Within the deadline, or active: untouched.
    expect((await h.deps.store.getSession(fresh.session.id))?.status).toBe('creating');
    expect(await h.provider.get(fresh.machine!.id)).not.toBeNull();
    expect((await h.deps.store.getSession(active.session.id))?.status).toBe('active');

    expect(await reap.execute()).toEqual({ reaped: 0 });
  });

  it('two replicas reaping the same stuck sessions fail each once', async () => {
    const sessions = await Promise.all(Array.from({ length: 6 }, () => h.provisioningSession('creating')));
    for (const { session } of sessions) await age(session.id, 60_000);
    const [a, b] = await Promise.all([new ReapStuckSessions(h.deps, 1_000).execute(), new ReapStuckSessions(h.replica(), 1_000).execute()]);
    expect(a.reaped + b.reaped).toBe(6);
    for (const { session } of sessions) {
      expect((await h.eventsOf(session.id)).filter((e) => e.type === 'failed')).toHaveLength(1);
      expect((await h.deps.store.getSession(session.id))?.errorMessage).toBe('provisioning timed out at creating');
    }
  });
});
