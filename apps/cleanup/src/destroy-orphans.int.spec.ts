import { createHarness, type Harness } from '../test/harness';
import type { PreviewSession } from '@velocity/session-store';
import { DestroyOrphans, orphanReason } from './destroy-orphans';

// Real machines: more than Jest's default 5 s (testTimeout in jest.preset.js is not applied per project).
jest.setTimeout(30_000);

describe('DestroyOrphans', () => {
  let h: Harness;

  beforeAll(async () => {
    h = await createHarness({ ORPHAN_GRACE_MS: 60_000, CLEANUP_BATCH_SIZE: 2 });
  });

  afterAll(async () => {
    await h?.close();
  });

  it('destroys machines with no live session once past the grace, and keeps live and provisioning ones', async () => {
    const stray = await h.strayMachine();
    const ended = await h.activeSession({ ttlSeconds: 600, expiryJob: false });
    // The row ended but its machine survived (a crash between the two).
    await h.deps.store.transition(ended.session.id, 'ending');
    await h.deps.store.transition(ended.session.id, 'ended', { ended: true });
    const live = await h.activeSession({ ttlSeconds: 600, expiryJob: false });
    const provisioning = await h.provisioningSession('creating', { machine: true });
    const orphans = [stray.id, ended.machine!.id];

    // The sweeps' clock: first sighting now, then the grace (60 s here) all but passed, then passed.
    const firstSeen = Date.now();
    const reconcile = new DestroyOrphans(h.deps);
    expect(await reconcile.execute(firstSeen)).toMatchObject({ destroyed: 0, waiting: 2, machineGone: 0 });
    expect(await reconcile.execute(firstSeen + 59_999)).toMatchObject({ destroyed: 0, waiting: 2, machineGone: 0 });
    for (const id of orphans) expect(await h.provider.get(id)).not.toBeNull();

    const graceOver = firstSeen + 60_000;
    // Two replicas at once: each orphan is destroyed by one of them.
    const [a, b] = await Promise.all([reconcile.execute(graceOver), new DestroyOrphans(h.replica()).execute(graceOver)]);
    expect(a.destroyed + b.destroyed).toBe(2);
    for (const id of orphans) {
      expect(await h.provider.get(id)).toBeNull();
      expect(h.destroyCalls.get(id)).toBe(1);
    }
    expect(await h.provider.get(live.machine!.id)).not.toBeNull();
    expect(await h.provider.get(provisioning.machine!.id)).not.toBeNull();
    expect(h.destroyCalls.get(live.machine!.id)).toBeUndefined();
    expect(h.destroyCalls.get(provisioning.machine!.id)).toBeUndefined();
    expect((await h.deps.store.getSession(live.session.id))?.status).toBe('active');

    await h.deps.store.transition(live.session.id, 'ending');
  });

  it('ends an active session whose machine is gone, with reason machine-gone', async () => {
    const gone = await h.activeSession({ ttlSeconds: 600, expiryJob: false });
    const kept = await h.activeSession({ ttlSeconds: 600, expiryJob: false });
    await h.provider.inner.destroy(gone.machine!.id);

    const result = await new DestroyOrphans(h.deps).execute();
    expect(result.machineGone).toBe(1);
    expect((await h.deps.store.getSession(gone.session.id))?.status).toBe('ended');
    expect((await h.eventsOf(gone.session.id)).map((e) => `${e.type}:${e.reason}`)).toEqual(['ending:machine-gone', 'ended:machine-gone']);
    expect((await h.deps.store.getSession(kept.session.id))?.status).toBe('active');
    expect(await h.provider.get(kept.machine!.id)).not.toBeNull();
  });

  it('orphanReason: which machines have no live session', () => {
    const machine = { id: 'local-a', sessionId: 'a', state: 'started' as const, url: 'http://127.0.0.1:1' };
    const row = (status: PreviewSession['status'], containerId: string | null = 'local-a') => ({ status, containerId }) as PreviewSession;
    expect(orphanReason(machine, undefined)).toBe('no session row');
    expect(orphanReason(machine, row('ended'))).toBe('session ended');
    expect(orphanReason(machine, row('error'))).toBe('session error');
    expect(orphanReason(machine, row('active', 'local-b'))).toBe('session runs on local-b');
    expect(orphanReason(machine, row('active'))).toBeNull();
    for (const status of ['queued', 'creating', 'starting', 'ending'] as const) expect(orphanReason(machine, row(status, null))).toBeNull();
  });
});
