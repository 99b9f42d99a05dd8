import { UnrecoverableError, WaitingError, Worker, type ConnectionOptions } from 'bullmq';
import { JobName, QueueName, parseJob } from '@velocity/contracts';
import { type Logger } from '@velocity/runtime';
import type { ProvisionDeps } from './provision-context';
import { ProvisionSession } from './provision-session';

/**
 * The BullMQ worker of the `sessions` queue. Validates each job, runs the use
 * case, and tells BullMQ whether to retry (throw) or stop (UnrecoverableError).
 */
export function createProvisionWorker(deps: ProvisionDeps, connection: ConnectionOptions, logger: Logger): Worker {
  const useCase = new ProvisionSession(deps);
  return new Worker(
    QueueName.Sessions,
    async (job, token, signal) => {
      if (job.name !== JobName.ProvisionSession) throw new UnrecoverableError(`Unknown job ${job.name}`);
      const data = parseJob(JobName.ProvisionSession, job.data);
      const jobLogger = logger.child({ sessionId: data.sessionId, jobId: job.id, ...(data.requestId ? { requestId: data.requestId } : {}) });
      const outcome = await useCase.execute({
        job: data,
        attempt: job.attemptsMade + 1,
        maxAttempts: job.opts.attempts ?? 1,
        signal: signal ?? new AbortController().signal,
        logger: jobLogger,
      });
      if (outcome.status === 'handed-back') {
        // Back to the queue untouched: another worker resumes it from the row.
        await job.moveToWait(token);
        throw new WaitingError();
      }
      if (outcome.status === 'retry') throw outcome.error;
      if (outcome.status === 'failed') throw new UnrecoverableError(outcome.error.message);
      return { previewUrl: outcome.previewUrl };
    },
    {
      name: `provisioner-${process.pid}`,
      connection,
      prefix: deps.config.QUEUE_PREFIX,
      concurrency: deps.config.PROVISION_CONCURRENCY,
      // A worker that dies loses its jobs to the others within seconds, not the default half minute.
      lockDuration: deps.config.PROVISION_LOCK_MS,
      stalledInterval: deps.config.PROVISION_STALLED_INTERVAL_MS,
      maxStalledCount: deps.config.PROVISION_MAX_STALLED,
    },
  );
}
