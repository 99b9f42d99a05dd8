import { createLogger } from '@velocity/runtime';
import { createMachineToken } from '@velocity/contracts';
import { createActivityReporter } from '../../preview-container/src/activity';
import { createHarness, sleep, until, type Harness } from '../../cleanup/test/harness';
import { scheduleSweep } from '../../cleanup/src/cleanup-worker';

// A real api process, a real cleanup worker and sweep: more than Jest's default 5 s.
jest.setTimeout(30_000);

/**
 * POST /v1/machines/:sessionId/activity, and the idle stop it feeds: the preview
 * container's reporter posts heartbeats to a real api process, the row records
 * them, and cleanup's sweep ends the session once the heartbeats stop.
 */
describe('machine activity and idle stop', () => {
  let h: Harness;
  let base: string;

  beforeAll(async () => {
    h = await createHarness({ IDLE_TIMEOUT_SECONDS: 1, CLEANUP_SWEEP_EVERY_MS: 250 });
    base = await h.startApi();
  });

  afterAll(async () => {
    await h?.close();
  });

  const tokenFor = (sessionId: string, projectId: string) => createMachineToken({ sessionId, projectId }, h.config.MACHINE_TOKEN_SECRET, 600);
  const post = async (sessionId: string, body: unknown, token?: string) => {
    const res = await fetch(`${base}/v1/machines/${sessionId}/activity`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: await res.json() };
  };
  const lastActivity = async (id: string) =>
    (await h.sql.query<{ last_activity_at: Date | null }>('select last_activity_at from preview_sessions where id = $1', [id])).rows[0]?.last_activity_at ?? null;

  it('records the activity of an active session for a machine holding its token', async () => {
    const { session } = await h.activeSession({ ttlSeconds: 600, expiryJob: false, machine: false });
    const token = tokenFor(session.id, session.projectId);
    const at = new Date(Date.now() - 1000).toISOString();
    expect(await post(session.id, { lastActivityAt: at }, token)).toEqual({ status: 200, body: { sessionId: session.id, lastActivityAt: at } });
    expect((await lastActivity(session.id))?.toISOString()).toBe(at);

    expect((await post(session.id, { lastActivityAt: at })).status).toBe(401);
    expect((await post(session.id, { lastActivityAt: at }, 'forged.token')).status).toBe(401);
    const other = await h.activeSession({ ttlSeconds: 600, expiryJob: false, machine: false });
    expect((await post(other.session.id, { lastActivityAt: at }, token)).status).toBe(403);
    expect(await post(session.id, { lastActivityAt: 'yesterday' }, token)).toMatchObject({ status: 400, body: { field: 'lastActivityAt' } });

    // An ended session's token no longer works: 410, and the machine stops reporting.
    await h.deps.store.transition(session.id, 'ending');
    expect(await post(session.id, { lastActivityAt: new Date().toISOString() }, token)).toMatchObject({ status: 410, body: { field: 'sessionId', status: 'ending' } });
    await h.deps.store.transition(other.session.id, 'ending');
  });

  it('a session whose machine keeps reporting stays; once the reports stop, the sweep ends it as idle', async () => {
    const { session, machine } = await h.activeSession({ ttlSeconds: 600, expiryJob: false });
    const reporter = createActivityReporter({
      url: `${base}/v1/machines/${session.id}/activity`,
      token: tokenFor(session.id, session.projectId),
      everyMs: 150,
      logger: createLogger('activity-test', 'silent'),
    });
    // An open HMR connection counts as activity for as long as it is open.
    reporter.connectionOpened();
    reporter.start();
    await scheduleSweep(h.deps);
    await h.startWorker();
    try {
      await sleep(2000);
      expect((await h.deps.store.getSession(session.id))?.status).toBe('active');
      expect(Date.now() - (await lastActivity(session.id))!.getTime()).toBeLessThan(1000);

      reporter.connectionClosed();
      await until(async () => (await h.deps.store.getSession(session.id))?.status === 'ended', 'the idle session to be ended', 10_000);
    } finally {
      reporter.stop();
      await h.deps.cleanupQueue.removeJobScheduler('sweep-sessions');
    }
    const ended = (await h.deps.store.getSession(session.id))!;
    // Ended no sooner than the idle limit after the last activity.
    expect(Date.parse(ended.endedAt!) - (await lastActivity(session.id))!.getTime()).toBeGreaterThanOrEqual(1000);
    expect((await h.eventsOf(session.id)).map((e) => `${e.type}:${e.reason}`)).toEqual(['ending:idle', 'ended:idle']);
    expect(await h.provider.get(machine!.id)).toBeNull();
  });
});
