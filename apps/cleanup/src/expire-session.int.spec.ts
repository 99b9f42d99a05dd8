import { jobs } from '@velocity/contracts';
import { enqueue } from '@velocity/ops';
import { createHarness, sleep, until, type Harness } from '../test/harness';

// Real machines, real delays: more than Jest's default 5 s (testTimeout in jest.preset.js is not applied per project).
jest.setTimeout(30_000);

describe('ExpireSession (the expire-session job, in a real worker)', () => {
  let h: Harness;

  beforeAll(async () => {
    h = await createHarness();
    await h.startWorker();
  });

  afterAll(async () => {
    await h?.close();
  });

  const status = async (id: string) => (await h.deps.store.getSession(id))?.status;

  it('ends a session when its delayed job comes due: machine destroyed once, ending and ended stored', async () => {
    const { session, machine } = await h.activeSession({ ttlSeconds: 1.5 });
    await sleep(500);
    expect(await status(session.id)).toBe('active');

    const ended = await until(async () => {
      const row = await h.deps.store.getSession(session.id);
      return row?.status === 'ended' ? row : null;
    }, 'the delayed job to end the session');
    expect(Date.parse(ended.endedAt!)).toBeGreaterThanOrEqual(Date.parse(session.expiresAt!));
    expect(await h.provider.get(machine!.id)).toBeNull();
    expect(h.destroyCalls.get(machine!.id)).toBe(1);
    expect(await h.eventsOf(session.id)).toEqual([
      expect.objectContaining({ type: 'ending', reason: 'expired' }),
      expect.objectContaining({ type: 'ended', reason: 'expired' }),
    ]);
  });

  it('a job due before an extended expires_at delays itself and ends the session at the new time', async () => {
    const { session } = await h.activeSession({ ttlSeconds: 1, machine: false });
    // The row moves, the job does not (as if the api could not move it).
    const extended = await h.deps.store.extendSession(session.id, 1.5, 3600);
    expect(extended.outcome).toBe('extended');
    const newExpiry = Date.parse((extended as { session: { expiresAt: string } }).session.expiresAt);

    await sleep(Date.parse(session.expiresAt!) - Date.now() + 600);
    expect(await status(session.id)).toBe('active');
    const ended = await until(async () => {
      const row = await h.deps.store.getSession(session.id);
      return row?.status === 'ended' ? row : null;
    }, 'the re-delayed job to end the session');
    expect(Date.parse(ended.endedAt!)).toBeGreaterThanOrEqual(newExpiry);
    expect((await h.eventsOf(session.id)).filter((e) => e.type === 'ended')).toHaveLength(1);
  });

  it('a stop job ends an active session at once, with reason stopped', async () => {
    const { session, machine } = await h.activeSession({ ttlSeconds: 600 });
    await enqueue(h.deps.cleanupQueue, jobs.stopSession(session.id));
    await until(async () => (await status(session.id)) === 'ended', 'the stop job');
    expect(await h.provider.get(machine!.id)).toBeNull();
    expect((await h.eventsOf(session.id)).map((e) => `${e.type}:${e.reason}`)).toEqual(['ending:stopped', 'ended:stopped']);
  });

  it('a stop job for a session cancelled while provisioning destroys the machine it had', async () => {
    const { session, machine } = await h.provisioningSession('starting', { machine: true });
    await h.deps.store.transition(session.id, 'error', { errorMessage: 'cancelled', ended: true });
    await enqueue(h.deps.cleanupQueue, jobs.stopSession(session.id));
    await until(async () => (await h.provider.get(machine!.id)) === null, 'the machine of the cancelled session to be destroyed');
    expect(await status(session.id)).toBe('error');
  });

  it('an expiry job for a session that is not active changes nothing', async () => {
    const { session, machine } = await h.provisioningSession('creating', { machine: true });
    const job = await enqueue(h.deps.cleanupQueue, jobs.expireSession(session.id, new Date().toISOString()));
    await until(async () => (await job.getState()) === 'completed' || (await h.deps.cleanupQueue.getJob(job.id!)) === undefined, 'the job to run');
    expect(await status(session.id)).toBe('creating');
    expect(await h.provider.get(machine!.id)).not.toBeNull();
    expect(await h.eventsOf(session.id)).toEqual([]);
  });
});
