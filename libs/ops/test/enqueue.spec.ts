import { randomUUID } from 'node:crypto';
import { JobName, QueueName, jobs, type QueuedJob } from '@velocity/contracts';
import { enqueue } from '../src/enqueue';

/** A queue that records what is added to it. */
function recordingQueue(name: string) {
  const added: { name: string; data: unknown; opts: unknown }[] = [];
  const queue = {
    name,
    async add(jobName: string, data: unknown, opts: unknown) {
      added.push({ name: jobName, data, opts });
      return { id: 'x' };
    },
  };
  return { queue: queue as unknown as Parameters<typeof enqueue>[0], added };
}

describe('enqueue', () => {
  const config = { PROVISION_ATTEMPTS: 4, PROVISION_BACKOFF_MS: 300 };

  it('adds the job with its parsed payload and the options written for it in contracts', async () => {
    const { queue, added } = recordingQueue(QueueName.Sessions);
    const data = { sessionId: randomUUID(), projectId: randomUUID(), tier: 'free' as const, requestedAt: 1_700_000_000_000 };
    await enqueue(queue, jobs.provisionSession(data, config));
    expect(added).toEqual([
      {
        name: JobName.ProvisionSession,
        data,
        opts: { jobId: data.sessionId, attempts: 4, backoff: { type: 'exponential', delay: 300 }, removeOnComplete: { age: 3600 }, removeOnFail: { age: 24 * 3600 } },
      },
    ]);
  });

  it('delays an expiry job to expires_at under the expiry job id; a stop job goes at once under its own', async () => {
    const { queue, added } = recordingQueue(QueueName.Cleanup);
    const sessionId = randomUUID();
    await enqueue(queue, jobs.expireSession(sessionId, new Date(1_000_060_000).toISOString(), 1_000_000_000));
    await enqueue(queue, jobs.stopSession(sessionId));
    expect(added.map(({ data, opts }) => ({ data, opts }))).toEqual([
      { data: { sessionId, reason: 'expired' }, opts: expect.objectContaining({ jobId: `expire-${sessionId}`, delay: 60_000 }) },
      { data: { sessionId, reason: 'stopped' }, opts: expect.objectContaining({ jobId: `stop-${sessionId}`, attempts: 3 }) },
    ]);
  });

  it('refuses a payload its schema refuses, before anything is added', async () => {
    const { queue, added } = recordingQueue(QueueName.Cleanup);
    await expect(enqueue(queue, jobs.expireSession('not-a-uuid', new Date().toISOString()))).rejects.toThrow(/sessionId/);
    const forged = { name: JobName.ExpireSession, data: { sessionId: randomUUID(), reason: 'bored' }, opts: {} } as unknown as QueuedJob;
    await expect(enqueue(queue, forged)).rejects.toThrow(/reason/);
    expect(added).toEqual([]);
  });

  it('refuses a job sent to a queue that is not its own', async () => {
    const { queue, added } = recordingQueue(QueueName.Sessions);
    await expect(enqueue(queue, jobs.stopSession(randomUUID()))).rejects.toThrow('expire-session jobs go to the cleanup queue, not sessions');
    expect(added).toEqual([]);
  });
});
