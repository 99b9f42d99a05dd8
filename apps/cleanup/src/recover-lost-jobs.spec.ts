import { JobName } from '@velocity/contracts';
import { createHarness, type Harness } from '../test/harness';
import { WithdrawnRequests } from '@velocity/ops';
import { RecoverLostJobs, WITHDRAWN_REASON } from './recover-lost-jobs';

// Real machines, real delays: more than Jest's default 5 s (testTimeout in jest.preset.js is not applied per project).
jest.setTimeout(30_000);

describe('RecoverLostJobs', () => {
  let h: Harness;

  beforeAll(async () => {
    h = await createHarness({ PROVISION_DEADLINE_MS: 30_000, INSTALL_TIMEOUT_MS: 1_000, CLEANUP_BATCH_SIZE: 2, PROVISION_ATTEMPTS: 4 });
  });

  afterAll(async () => {
    await h?.close();
  });

  it('enqueues again the job of a session still provisioning within its deadline whose job Redis lost', async () => {
    const lost = await Promise.all([h.provisioningSession('queued'), h.provisioningSession('creating'), h.provisioningSession('starting')]);
    const withJob = await h.provisioningSession('queued');
    await h.deps.sessionsQueue.add(JobName.ProvisionSession, { marker: 'original' }, { jobId: withJob.session.id, delay: 60_000 });
    const late = await h.provisioningSession('queued');
    await h.sql.query(`update preview_sessions set created_at = now() - interval '1 minute' where id = $1`, [late.session.id]);
    const active = await h.activeSession({ ttlSeconds: 600, expiryJob: false, machine: false });

    const recover = new RecoverLostJobs(h.deps);
    const result = await recover.execute();
    expect(result).toEqual({ checked: 4, requeued: 3, withdrawn: 0 });

    for (const { session } of lost) {
      const job = await h.deps.sessionsQueue.getJob(session.id);
      expect(job?.name).toBe(JobName.ProvisionSession);
      expect(job?.data).toEqual({ sessionId: session.id, projectId: session.projectId, tier: 'free', requestedAt: Date.parse(session.createdAt) });
      expect(job?.opts).toMatchObject({ attempts: 4, backoff: { type: 'exponential', delay: h.config.PROVISION_BACKOFF_MS } });
    }
    // An existing job is left as it is; past the deadline the stuck sweep takes over; active needs nothing.
    expect((await h.deps.sessionsQueue.getJob(withJob.session.id))?.data).toEqual({ marker: 'original' });
    expect(await h.deps.sessionsQueue.getJob(late.session.id)).toBeUndefined();
    expect(await h.deps.sessionsQueue.getJob(active.session.id)).toBeUndefined();

    expect(await recover.execute()).toEqual({ checked: 4, requeued: 0, withdrawn: 0 });
    expect(await h.deps.sessionsQueue.getJobCounts('delayed', 'waiting')).toEqual({ delayed: 1, waiting: 3 });
  });

  it('fails, instead of enqueuing, a row whose request the api marked withdrawn (answered with an error while the insert was in flight)', async () => {
    const withdrawnRow = await h.provisioningSession('queued');
    const lostRow = await h.provisioningSession('queued');
    await new WithdrawnRequests(h.deps.redis, h.config.QUEUE_PREFIX).mark(withdrawnRow.session.id);

    const result = await new RecoverLostJobs(h.deps).execute();
    expect(result).toMatchObject({ requeued: 1, withdrawn: 1 });
    expect(await h.deps.sessionsQueue.getJob(withdrawnRow.session.id)).toBeUndefined();
    expect(await h.deps.store.getSession(withdrawnRow.session.id)).toMatchObject({ status: 'error', errorMessage: WITHDRAWN_REASON });
    expect(await h.deps.sessionsQueue.getJob(lostRow.session.id)).toBeDefined();
  });
});
