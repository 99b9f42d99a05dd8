import { jobs, provisioningLimitMs } from '@velocity/contracts';
import { enqueue } from '@velocity/ops';
import { type SessionCursor } from '@velocity/session-store';
import type { CleanupDeps } from './cleanup-deps';

export type RecoverLostJobsDeps = Pick<CleanupDeps, 'store' | 'logger' | 'config' | 'sessionsQueue'>;

/**
 * Sessions still provisioning and within their deadline whose BullMQ job is gone
 * (Redis lost it: a failover, a flush) are enqueued again from the row. The add
 * uses the session id as job id, so BullMQ ignores it when the job exists: safe
 * against the api, the provisioner and other replicas doing the same.
 */
export class RecoverLostJobs {
  constructor(private readonly deps: RecoverLostJobsDeps) {}

  async execute(now = new Date()): Promise<{ checked: number; requeued: number }> {
    const { store, config, sessionsQueue, logger } = this.deps;
    const createdAfter = new Date(now.getTime() - provisioningLimitMs(config));
    let cursor: SessionCursor | undefined;
    let checked = 0;
    let requeued = 0;
    for (;;) {
      const batch = await store.listProvisioningSessions(createdAfter, config.CLEANUP_BATCH_SIZE, cursor);
      for (const session of batch) {
        checked += 1;
        try {
          if (await sessionsQueue.getJob(session.id)) continue;
          const data = { sessionId: session.id, projectId: session.projectId, tier: session.tier, requestedAt: Date.parse(session.createdAt) };
          await enqueue(sessionsQueue, jobs.provisionSession(data, config));
          requeued += 1;
          logger.warn('lost provisioning job enqueued again', { sessionId: session.id, status: session.status });
        } catch (err) {
          logger.error('could not re-enqueue provisioning job', { sessionId: session.id, err });
        }
      }
      if (batch.length < config.CLEANUP_BATCH_SIZE) break;
      const last = batch[batch.length - 1];
      cursor = { createdAt: last.createdAt, id: last.id };
    }
    return { checked, requeued };
  }
}
