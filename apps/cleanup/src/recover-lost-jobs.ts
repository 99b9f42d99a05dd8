import { jobs, provisioningLimitMs } from '@velocity/contracts';
import { WithdrawnRequests, enqueue } from '@velocity/ops';
import { type SessionCursor } from '@velocity/session-store';
import type { CleanupDeps } from './cleanup-deps';

export type RecoverLostJobsDeps = Pick<CleanupDeps, 'store' | 'logger' | 'config' | 'sessionsQueue' | 'redis'>;

/**
 * Sessions still provisioning and within their deadline whose BullMQ job is gone
 * (Redis lost it: a failover, a flush) are enqueued again from the row. The add
 * uses the session id as job id, so BullMQ ignores it when the job exists: safe
 * against the api, the provisioner and other replicas doing the same.
 * A request the api marked withdrawn (it answered an error while its row may
 * have been written) is failed instead: its client was told it did not happen.
 */
export class RecoverLostJobs {
  private readonly withdrawn: WithdrawnRequests;

  constructor(private readonly deps: RecoverLostJobsDeps) {
    this.withdrawn = new WithdrawnRequests(deps.redis, deps.config.QUEUE_PREFIX);
  }

  async execute(now = new Date()): Promise<{ checked: number; requeued: number; withdrawn: number }> {
    const { store, config, sessionsQueue, logger } = this.deps;
    const createdAfter = new Date(now.getTime() - provisioningLimitMs(config));
    let cursor: SessionCursor | undefined;
    let checked = 0;
    let requeued = 0;
    let withdrawn = 0;
    for (;;) {
      const batch = await store.listProvisioningSessions(createdAfter, config.CLEANUP_BATCH_SIZE, cursor);
      for (const session of batch) {
        checked += 1;
        try {
          if (await sessionsQueue.getJob(session.id)) continue;
          if (await this.withdrawn.isMarked(session.id)) {
            if (await store.transition(session.id, 'error', { errorMessage: WITHDRAWN_REASON, ended: true })) withdrawn += 1;
            logger.warn('withdrawn session request failed instead of enqueued', { sessionId: session.id });
            continue;
          }
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
    return { checked, requeued, withdrawn };
  }
}

export const WITHDRAWN_REASON = 'withdrawn: the api answered this request with an error';
