import { UnrecoverableError, Worker, type ConnectionOptions } from 'bullmq';
import { JobName, QueueName, parseJob, type Logger } from '@velocity/shared';
import { EndSession, type EndSessionDeps } from './end-session';

/** The BullMQ worker of the `cleanup` queue: one delayed expiry job per session. */
export function createCleanupWorker(deps: EndSessionDeps, connection: ConnectionOptions, prefix: string, logger: Logger): Worker {
  const endSession = new EndSession(deps);
  return new Worker(
    QueueName.Cleanup,
    async (job) => {
      if (job.name !== JobName.ExpireSession) throw new UnrecoverableError(`Unknown job ${job.name}`);
      const { sessionId } = parseJob(JobName.ExpireSession, job.data);
      const result = await endSession.execute(sessionId, 'expired');
      logger.info('expiry job done', { sessionId, jobId: job.id, result });
      return { result };
    },
    { connection, prefix },
  );
}
