import { createHarness, until, type Harness } from '../test/harness';
import { SWEEP_SCHEDULER_ID, scheduleSweep } from './cleanup-worker';

/**
 * Two cleanup replicas (two real BullMQ workers, each with its own Postgres
 * pool, Redis connection and provider instance) racing on 50 sessions that
 * expire at once: the delayed jobs and a sweep every 200 ms on both workers.
 */
describe('cleanup worker: two replicas racing', () => {
  let h: Harness;

  beforeAll(async () => {
    h = await createHarness({ CLEANUP_SWEEP_EVERY_MS: 200, CLEANUP_BATCH_SIZE: 7 });
  }, 30_000);

  afterAll(async () => {
    await h?.close();
  }, 30_000);

  it('ends each of 50 expiring sessions exactly once and destroys each machine exactly once', async () => {
    const sessions: Awaited<ReturnType<Harness['activeSession']>>[] = [];
    for (let i = 0; i < 50; i += 10) {
      sessions.push(...(await Promise.all(Array.from({ length: 10 }, () => h.activeSession({ ttlSeconds: 4, expiryJob: true })))));
    }
    // Half of the delayed jobs are lost: the sweep must end those.
    for (const { session } of sessions.slice(0, 25)) await h.deps.cleanupQueue.remove(`expire-${session.id}`);
    // Keep the idle rule out of it: activity just reported.
    for (const { session } of sessions) await h.deps.store.recordActivity(session.id, new Date());

    await scheduleSweep(h.deps);
    await Promise.all([h.startWorker(h.replica(), { concurrency: 8 }), h.startWorker(h.replica(), { concurrency: 8 })]);

    await until(async () => {
      const rows = await h.deps.store.getSessionsByIds(sessions.map((s) => s.session.id));
      return rows.every((r) => r.status === 'ended');
    }, 'all 50 sessions to end', 30_000, 100);
    await h.deps.cleanupQueue.removeJobScheduler(SWEEP_SCHEDULER_ID);

    for (const { session, machine } of sessions) {
      const events = await h.eventsOf(session.id);
      expect(events.filter((e) => e.type === 'ended')).toHaveLength(1);
      expect(events.filter((e) => e.type === 'ending')).toHaveLength(1);
      expect(h.destroyCalls.get(machine!.id)).toBe(1);
      expect(await h.provider.get(machine!.id)).toBeNull();
    }
    // No other machine was touched.
    expect([...h.destroyCalls.keys()].sort()).toEqual(sessions.map((s) => s.machine!.id).sort());
  }, 60_000);
});
