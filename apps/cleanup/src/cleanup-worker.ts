import { DelayedError, UnrecoverableError, Worker, type ConnectionOptions, type Job } from 'bullmq';
import { JobName, QueueName, errorMessage, parseJob } from '@velocity/contracts';
import type { CleanupDeps } from './cleanup-deps';
import { DestroyOrphans } from './destroy-orphans';
import { ExpireSession, expireJobSchema } from './expire-session';
import { RecoverLostJobs } from './recover-lost-jobs';
import { ReapStuckSessions } from './reap-stuck-sessions';
import { SweepSessions } from './sweep-sessions';

/** The job scheduler that adds a `sweep-sessions` job every CLEANUP_SWEEP_EVERY_MS. */
export const SWEEP_SCHEDULER_ID = 'sweep-sessions';

export interface CleanupWorkerOptions {
  /** Jobs one worker runs at once (a long sweep must not hold up expiry jobs). Default 4. */
  concurrency?: number;
  /** Grace past PROVISION_DEADLINE_MS before a session counts as stuck (default STUCK_GRACE_MS). */
  stuckGraceMs?: number;
}

/** The sweep's parts, run in this order by each `sweep-sessions` job; one failing does not stop the others. */
export function createSweep(deps: CleanupDeps, options: CleanupWorkerOptions = {}) {
  const parts = {
    sessions: new SweepSessions(deps),
    stuck: new ReapStuckSessions(deps, options.stuckGraceMs),
    lostJobs: new RecoverLostJobs(deps),
    machines: new DestroyOrphans(deps),
  };
  return async function sweep(): Promise<Record<keyof typeof parts, unknown>> {
    const report = {} as Record<keyof typeof parts, unknown>;
    for (const [name, part] of Object.entries(parts) as [keyof typeof parts, { execute(): Promise<unknown> }][]) {
      try {
        report[name] = await part.execute();
      } catch (err) {
        deps.logger.error('sweep part failed', { part: name, err });
        report[name] = { error: errorMessage(err) };
      }
    }
    return report;
  };
}

/**
 * The BullMQ worker of the `cleanup` queue: `expire-session` jobs (one delayed
 * job per session at its `expires_at`, or added at once by a stop) and the
 * scheduled `sweep-sessions` job. Several replicas may run: every effect is
 * claimed in the database first.
 */
export function createCleanupWorker(
  deps: CleanupDeps,
  connection: ConnectionOptions,
  options: CleanupWorkerOptions = {},
): Worker {
  const { logger } = deps;
  const expire = new ExpireSession(deps);
  const sweep = createSweep(deps, options);
  return new Worker(
    QueueName.Cleanup,
    async (job: Job, token?: string) => {
      switch (job.name) {
        case JobName.ExpireSession: {
          const data = expireJobSchema.parse(job.data);
          const outcome = await expire.execute(data);
          logger.info('expire job done', { sessionId: data.sessionId, jobId: job.id, reason: data.reason, ...outcome });
          if (outcome.result === 'not-due') {
            // Extended after this job was scheduled: run this same job again at the new expiry.
            await job.moveToDelayed(outcome.dueAt, token);
            throw new DelayedError();
          }
          return outcome;
        }
        case JobName.SweepSessions: {
          parseJob(JobName.SweepSessions, job.data ?? {});
          const started = Date.now();
          const report = await sweep();
          // A sweep that changed something says so at info; an idle one every CLEANUP_SWEEP_EVERY_MS stays at debug.
          (acted(report) ? logger.info : logger.debug)('sweep done', { jobId: job.id, ms: Date.now() - started, ...report });
          return report;
        }
        default:
          throw new UnrecoverableError(`Unknown job ${job.name}`);
      }
    },
    { connection, prefix: deps.config.QUEUE_PREFIX, concurrency: options.concurrency ?? 4 },
  );
}

/** Whether a sweep report counts anything done (or failed): every number but `checked` and `waiting`, and errors. */
function acted(report: Record<string, unknown>): boolean {
  return Object.values(report).some(
    (part) =>
      typeof part === 'object' &&
      part !== null &&
      Object.entries(part).some(([key, value]) => key === 'error' || (typeof value === 'number' && value > 0 && key !== 'checked' && key !== 'waiting')),
  );
}

/** Registers (or updates) the sweep's job scheduler; every replica may call it, there is one scheduler. */
export async function scheduleSweep(deps: Pick<CleanupDeps, 'cleanupQueue' | 'config'>): Promise<void> {
  await deps.cleanupQueue.upsertJobScheduler(
    SWEEP_SCHEDULER_ID,
    { every: deps.config.CLEANUP_SWEEP_EVERY_MS },
    { name: JobName.SweepSessions, data: {}, opts: { removeOnComplete: 100, removeOnFail: 100 } },
  );
}
