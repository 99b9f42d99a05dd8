import type { Worker } from 'bullmq';
import { CLEANUP_SQL } from '@velocity/session-store';
import { JobName } from '@velocity/contracts';
import { createHarness, until, type Harness } from '../test/harness';
import { SWEEP_SCHEDULER_ID, scheduleSweep } from './cleanup-worker';
import { SweepSessions } from './sweep-sessions';

// Real machines: more than Jest's default 5 s (testTimeout in jest.preset.js is not applied per project).
jest.setTimeout(30_000);

describe('SweepSessions', () => {
  let h: Harness;

  beforeAll(async () => {
    h = await createHarness({ CLEANUP_BATCH_SIZE: 2, IDLE_TIMEOUT_SECONDS: 1, CLEANUP_SWEEP_EVERY_MS: 300 });
  });

  afterAll(async () => {
    await h?.close();
  });

  const status = async (id: string) => (await h.deps.store.getSession(id))?.status;
  /** Time is up for these sessions, by the database's clock (which the sweep's `expires_at <= now()` reads). */
  const expireNow = (...ids: string[]) => h.sql.query(`update preview_sessions set expires_at = now() - interval '1 second' where id = any($1::uuid[])`, [ids]);

  it('the scheduled sweep ends a session whose delayed job was removed', async () => {
    const { session, machine } = await h.activeSession({ ttlSeconds: 600 });
    expect(await h.deps.cleanupQueue.remove(`expire-${session.id}`)).toBe(1);
    // Expired before any sweep runs: a sweep ends expired sessions before it looks for idle ones.
    await expireNow(session.id);
    let worker: Worker | undefined;
    try {
      await scheduleSweep(h.deps);
      await scheduleSweep(h.deps);
      expect(await h.deps.cleanupQueue.getJobSchedulersCount()).toBe(1);
      expect(await h.deps.cleanupQueue.getJobScheduler(SWEEP_SCHEDULER_ID)).toMatchObject({ every: 300, name: JobName.SweepSessions });
      worker = await h.startWorker();
      await until(async () => (await status(session.id)) === 'ended', 'the sweep to end the expired session');
    } finally {
      await h.deps.cleanupQueue.removeJobScheduler(SWEEP_SCHEDULER_ID);
      // No sweep of this worker may run into the next tests (its full sweep also ends sessions without a machine).
      await worker?.close();
    }
    expect(h.destroyCalls.get(machine!.id)).toBe(1);
    expect(await h.provider.get(machine!.id)).toBeNull();
    expect((await h.eventsOf(session.id)).map((e) => `${e.type}:${e.reason}`)).toEqual(['ending:expired', 'ended:expired']);
  });

  it('ends every expired session in batches, each once; a second sweep finds nothing', async () => {
    const sessions = await Promise.all(Array.from({ length: 5 }, (_, i) => h.activeSession({ ttlSeconds: 600, expiryJob: false, machine: i < 2 })));
    const future = await h.activeSession({ ttlSeconds: 600, expiryJob: false, machine: false });
    await expireNow(...sessions.map(({ session }) => session.id));
    // All in use just now: only expiry ends sessions here, never the idle limit (however slow the machine).
    for (const { session } of [...sessions, future]) await h.deps.store.recordActivity(session.id, new Date());

    const sweep = new SweepSessions(h.deps);
    // Two replicas sweeping at once: the claim lets each session end once.
    const [a, b] = await Promise.all([sweep.execute(), new SweepSessions(h.replica()).execute()]);
    expect(a.expired + b.expired).toBe(5);
    expect((await sweep.execute()).expired).toBe(0);
    for (const { session, machine } of sessions) {
      expect(await status(session.id)).toBe('ended');
      // Sessions 2-4 have no machine process: destroying a machine that is gone is success.
      if (machine) expect(h.destroyCalls.get(machine.id)).toBe(1);
      expect((await h.eventsOf(session.id)).filter((e) => e.type === 'ended')).toHaveLength(1);
    }
    expect(await status(future.session.id)).toBe('active');
    // Out of the way of the idle rule in the tests that follow.
    await h.deps.store.transition(future.session.id, 'ending');
  });

  it('ends a session idle past the limit with reason idle and keeps one that reports activity', async () => {
    const idle = await h.activeSession({ ttlSeconds: 600, expiryJob: false });
    const busy = await h.activeSession({ ttlSeconds: 600, expiryJob: false });
    // Last used 2 s ago, past the idle limit (1 s here); the other just now.
    await h.deps.store.recordActivity(idle.session.id, new Date(Date.now() - 2000));
    await h.deps.store.recordActivity(busy.session.id, new Date());

    const result = await new SweepSessions(h.deps).execute();
    expect(result).toEqual({ expired: 0, idle: 1, resumed: 0 });
    expect(await status(idle.session.id)).toBe('ended');
    expect(await status(busy.session.id)).toBe('active');
    expect(await h.provider.get(idle.machine!.id)).toBeNull();
    expect(await h.provider.get(busy.machine!.id)).not.toBeNull();
    expect((await h.eventsOf(idle.session.id)).map((e) => `${e.type}:${e.reason}`)).toEqual(['ending:idle', 'ended:idle']);
    await h.deps.store.transition(busy.session.id, 'ending');
  });

  it('finishes a session a dead cleanup left ending: machine destroyed, ended with the reason it had', async () => {
    const { session, machine } = await h.activeSession({ ttlSeconds: 600, expiryJob: false });
    await h.deps.store.transition(session.id, 'ending');
    await h.deps.events.append({ type: 'ending', sessionId: session.id, at: Date.now(), reason: 'expired' });
    const sweep = new SweepSessions(h.deps);
    // Not yet stale (ORPHAN_GRACE_MS, 60 s by default): a live cleanup may be ending it right now.
    expect((await sweep.execute()).resumed).toBe(0);
    await h.sql.query(`update preview_sessions set updated_at = now() - interval '2 minutes' where id = $1`, [session.id]);

    const [a, b] = await Promise.all([sweep.execute(), new SweepSessions(h.replica()).execute()]);
    expect(a.resumed + b.resumed).toBe(1);
    expect((await h.deps.store.getSession(session.id))?.status).toBe('ended');
    expect(await h.provider.get(machine!.id)).toBeNull();
    expect(h.destroyCalls.get(machine!.id)).toBe(1);
    expect((await h.eventsOf(session.id)).map((e) => `${e.type}:${e.reason}`)).toEqual(['ending:expired', 'ended:expired']);
  });

  describe('query plans', () => {
    /**
     * The sweep queries must read their partial indexes, so a sweep costs what it
     * finds, not the table. Plain planner settings: enable_seqscan stays on.
     */
    const PLAN_PROJECT = '00000000-0000-4000-8000-000000000001';
    const planOf = async (sql: string, params: unknown[]) => {
      const { rows } = await h.sql.query<{ 'QUERY PLAN': string }>(`explain ${sql}`, params);
      return rows.map((r) => r['QUERY PLAN']).join('\n');
    };

    beforeAll(async () => {
      // A table shaped like production: many finished sessions, a few thousand live ones
      // (a few of them expired or idle), some being provisioned.
      await h.sql.query(`
        insert into projects (id, name) values ('${PLAN_PROJECT}', 'plan') on conflict do nothing;
        insert into preview_sessions (id, project_id, status, expires_at, ended_at, created_at, updated_at)
        select gen_random_uuid(), '${PLAN_PROJECT}', case when i % 7 = 0 then 'error' else 'ended' end,
               now() - (i || ' seconds')::interval, now(), now() - (i || ' seconds')::interval - interval '1 hour', now()
        from generate_series(1, 20000) i;
        insert into preview_sessions (id, project_id, status, tier, expires_at, last_activity_at, activated_at, created_at, updated_at)
        select gen_random_uuid(), '${PLAN_PROJECT}', 'active', case when i % 3 = 0 then 'pro' else 'free' end,
               case when i % 100 = 0 then now() - interval '1 minute' else now() + (i || ' seconds')::interval end,
               case when i % 100 = 1 then now() - interval '2 hours' else now() - ((i % 300) || ' seconds')::interval end,
               now() - interval '30 minutes', now() - interval '30 minutes', now()
        from generate_series(1, 3000) i;
        insert into preview_sessions (id, project_id, status, created_at, updated_at)
        select gen_random_uuid(), '${PLAN_PROJECT}', (array['queued', 'creating', 'starting'])[1 + i % 3],
               case when i % 50 = 0 then now() - interval '10 minutes' else now() - ((i % 30) || ' seconds')::interval end, now()
        from generate_series(1, 200) i;
        analyze preview_sessions;`);
    });

    afterAll(async () => {
      await h.sql.query(`delete from preview_sessions where project_id = '${PLAN_PROJECT}'`);
    });

    it('listExpiredSessions reads preview_sessions_active_expires_at_idx, never the whole table', async () => {
      const plan = await planOf(CLEANUP_SQL.listExpired, [new Date(), 100]);
      process.stdout.write(`\nEXPLAIN listExpiredSessions:\n${plan}\n`);
      expect(plan).toMatch(/(Index Scan|Bitmap Index Scan) (using|on) preview_sessions_active_expires_at_idx/);
      expect(plan).not.toMatch(/Seq Scan/);
    });

    it('the idle, stuck, provisioning, active and stale-ending queries read partial indexes too', async () => {
      const idle = await planOf(CLEANUP_SQL.listIdle, ['free', new Date(Date.now() - 600_000), 100]);
      expect(idle).toMatch(/preview_sessions_active_idle_idx/);
      const stuck = await planOf(CLEANUP_SQL.listStuck, [new Date(Date.now() - 75_000), 100]);
      expect(stuck).toMatch(/preview_sessions_provisioning_(created|updated)_at_idx/);
      const provisioning = await planOf(CLEANUP_SQL.listProvisioning, [new Date(Date.now() - 60_000), 100, null, null]);
      expect(provisioning).toMatch(/preview_sessions_provisioning_created_at_idx/);
      const active = await planOf(CLEANUP_SQL.listActive, [100, null]);
      expect(active).toMatch(/preview_sessions_active_id_idx/);
      const ending = await planOf(CLEANUP_SQL.listStaleEnding, [new Date(Date.now() - 60_000), 100]);
      expect(ending).toMatch(/preview_sessions_ending_updated_at_idx/);
      for (const plan of [idle, stuck, provisioning, active, ending]) expect(plan).not.toMatch(/Seq Scan/);
    });
  });
});
