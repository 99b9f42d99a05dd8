import { JobName, expiryJobId } from '@velocity/contracts';
import { createHarness, sleep, until, type Harness } from '../../cleanup/test/harness';

// A real api process and real cleanup workers: more than Jest's default 5 s.
jest.setTimeout(30_000);

/**
 * POST /v1/sessions/:id/extend and DELETE /v1/sessions/:id against a real api
 * process, with a real cleanup worker ending the sessions, on a database and
 * queue prefix of their own.
 */
describe('session lifecycle api: extend and stop', () => {
  let h: Harness;
  let base: string;

  beforeAll(async () => {
    h = await createHarness();
    base = await h.startApi();
  });

  afterAll(async () => {
    await h?.close();
  });

  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
  const row = (id: string) => h.deps.store.getSession(id);

  it('extend moves expires_at and the delayed job; the session ends at the new time', async () => {
    const { session, machine } = await h.activeSession({ ttlSeconds: 1.5 });
    const res = await call('POST', `/v1/sessions/${session.id}/extend`, { seconds: 2 });
    expect(res.status).toBe(200);
    const newExpiry = Date.parse(session.expiresAt!) + 2000;
    expect(Date.parse(res.body.expiresAt)).toBe(newExpiry);
    expect(res.body).toMatchObject({ sessionId: session.id, status: 'active', maxUntil: expect.any(String) });
    expect((await row(session.id))?.expiresAt).toBe(res.body.expiresAt);

    // No worker runs yet: had the job stayed at the old time, it would be waiting by now.
    await sleep(Date.parse(session.expiresAt!) - Date.now() + 400);
    const job = await h.deps.cleanupQueue.getJob(expiryJobId(session.id));
    expect(await job?.getState()).toBe('delayed');
    expect((await row(session.id))?.status).toBe('active');

    await h.startWorker();
    const ended = await until(async () => {
      const r = await row(session.id);
      return r?.status === 'ended' ? r : null;
    }, 'the session to end at its new expiry');
    expect(Date.parse(ended.endedAt!)).toBeGreaterThanOrEqual(newExpiry);
    expect(Date.parse(ended.endedAt!)).toBeLessThan(newExpiry + 3000);
    expect(await h.provider.get(machine!.id)).toBeNull();
    expect((await h.eventsOf(session.id)).map((e) => `${e.type}:${e.reason}`)).toEqual(['ending:expired', 'ended:expired']);
  });

  it('extend beyond the tier maximum is a 409 naming the limit, and changes nothing', async () => {
    const { session } = await h.activeSession({ ttlSeconds: 600, machine: false });
    const res = await call('POST', `/v1/sessions/${session.id}/extend`, { seconds: 3600 });
    expect(res.status).toBe(409);
    expect(res.body).toMatchObject({ statusCode: 409, error: 'Conflict', limit: 'maxDurationSeconds', maxDurationSeconds: 3600, field: 'seconds' });
    expect(res.body.message).toMatch(/free tier's maximum session length of 3600 s/);
    expect(res.body.message).toMatch(/at most 3000 s more/);
    expect((await row(session.id))?.expiresAt).toBe(session.expiresAt);

    const within = await call('POST', `/v1/sessions/${session.id}/extend`, { seconds: 3000 });
    expect(within.status).toBe(200);
    expect(within.body.expiresAt).toBe(within.body.maxUntil);
  });

  it('extend answers 409 for a session that is not active, 404 for an unknown one, 400 for a bad body', async () => {
    const { session } = await h.provisioningSession('creating');
    const notActive = await call('POST', `/v1/sessions/${session.id}/extend`, { seconds: 60 });
    expect(notActive.status).toBe(409);
    expect(notActive.body).toMatchObject({ status: 'creating', message: expect.stringMatching(/only an active session can be extended/) });
    expect((await call('POST', `/v1/sessions/${crypto.randomUUID()}/extend`, { seconds: 60 })).status).toBe(404);
    expect(await call('POST', `/v1/sessions/${session.id}/extend`, { seconds: -1 })).toMatchObject({ status: 400, body: { field: 'seconds' } });
    expect(await call('POST', `/v1/sessions/${session.id}/extend`, { seconds: 60, more: 1 })).toMatchObject({ status: 400, body: { field: 'more' } });
    expect((await call('POST', `/v1/sessions/not-a-uuid/extend`, { seconds: 60 })).status).toBe(400);
  });

  it('DELETE stops an active session now: 202, then ended with reason stopped and its machine destroyed', async () => {
    await h.startWorker();
    const { session, machine } = await h.activeSession({ ttlSeconds: 600 });
    const res = await call('DELETE', `/v1/sessions/${session.id}`);
    expect(res).toMatchObject({ status: 202, body: { sessionId: session.id, status: 'active', stop: 'ending' } });
    await until(async () => (await row(session.id))?.status === 'ended', 'the stopped session to end');
    expect(await h.provider.get(machine!.id)).toBeNull();
    expect(h.destroyCalls.get(machine!.id)).toBe(1);
    expect((await h.eventsOf(session.id)).map((e) => `${e.type}:${e.reason}`)).toEqual(['ending:stopped', 'ended:stopped']);
    expect(await h.deps.cleanupQueue.getJob(expiryJobId(session.id))).toBeUndefined();

    expect((await call('DELETE', `/v1/sessions/${session.id}`)).status).toBe(409);
    expect((await call('DELETE', `/v1/sessions/${crypto.randomUUID()}`)).status).toBe(404);
  });

  it('DELETE of a session still provisioning cancels it: error, job removed, failed event, machine destroyed', async () => {
    await h.startWorker();
    const { session, machine } = await h.provisioningSession('starting', { machine: true });
    await h.deps.sessionsQueue.add(JobName.ProvisionSession, { sessionId: session.id }, { jobId: session.id, delay: 60_000 });
    const res = await call('DELETE', `/v1/sessions/${session.id}`);
    expect(res).toMatchObject({ status: 202, body: { sessionId: session.id, status: 'error', stop: 'cancelled' } });
    expect(await row(session.id)).toMatchObject({ status: 'error', errorMessage: 'cancelled: stopped before it was ready' });
    expect(await h.deps.sessionsQueue.getJob(session.id)).toBeUndefined();
    expect(await h.eventsOf(session.id)).toEqual([expect.objectContaining({ type: 'failed', retryable: false })]);
    await until(async () => (await h.provider.get(machine!.id)) === null, 'the machine of the cancelled session to be destroyed');
  });
});
