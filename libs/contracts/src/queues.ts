import type { JobsOptions } from 'bullmq';
import { z } from 'zod';
import type { Config } from './config';
import { REQUEST_ID_PATTERN } from './request-id';

/**
 * The queue contract: every queue, every job name and its payload, declared once.
 * Producers and workers both validate payloads with these schemas.
 */
export const QueueName = {
  /** Provisioning jobs; job id = session id, so a session is provisioned at most once at a time. */
  Sessions: 'sessions',
  /** Expiry jobs and the periodic sweep. */
  Cleanup: 'cleanup',
  /** The warm pool's refill, on a schedule. */
  Pool: 'pool',
} as const;
export type QueueName = (typeof QueueName)[keyof typeof QueueName];
export const ALL_QUEUES: readonly QueueName[] = Object.values(QueueName);

export const JobName = {
  ProvisionSession: 'provision-session',
  ExpireSession: 'expire-session',
  SweepSessions: 'sweep-sessions',
  RefillPool: 'refill-pool',
} as const;
export type JobName = (typeof JobName)[keyof typeof JobName];

export const TIERS = ['free', 'pro'] as const;
export const tierSchema = z.enum(TIERS);
export type Tier = z.infer<typeof tierSchema>;

const uuid = z.string().uuid();

export const provisionSessionJobSchema = z.object({
  sessionId: uuid,
  projectId: uuid,
  tier: tierSchema,
  /** Epoch ms when the client asked; the provisioning deadline counts from here. */
  requestedAt: z.number().int().positive(),
  /** The api request that asked for the session (x-request-id): the provisioner logs it on every line of the job. */
  requestId: z.string().regex(REQUEST_ID_PATTERN).optional(),
});
export type ProvisionSessionJob = z.infer<typeof provisionSessionJobSchema>;

/** Why a session ends: `expired` (the delayed job at `expires_at`) or `stopped` (DELETE /v1/sessions/:id, no delay). */
export const expireSessionJobSchema = z.object({ sessionId: uuid, reason: z.enum(['expired', 'stopped']).default('expired') });
export type ExpireSessionJob = z.infer<typeof expireSessionJobSchema>;

export const sweepSessionsJobSchema = z.object({});

export const refillPoolJobSchema = z.object({});
export type RefillPoolJob = z.infer<typeof refillPoolJobSchema>;
export type SweepSessionsJob = z.infer<typeof sweepSessionsJobSchema>;

/** Each job name mapped to its queue and payload schema. */
export const JOBS = {
  [JobName.ProvisionSession]: { queue: QueueName.Sessions, schema: provisionSessionJobSchema },
  [JobName.ExpireSession]: { queue: QueueName.Cleanup, schema: expireSessionJobSchema },
  [JobName.SweepSessions]: { queue: QueueName.Cleanup, schema: sweepSessionsJobSchema },
  [JobName.RefillPool]: { queue: QueueName.Pool, schema: refillPoolJobSchema },
} as const;

/** The typed union of every job, as in `queue.add(item.name, item.data)`. */
export type JobItem =
  | { name: typeof JobName.ProvisionSession; data: ProvisionSessionJob }
  | { name: typeof JobName.ExpireSession; data: ExpireSessionJob }
  | { name: typeof JobName.SweepSessions; data: SweepSessionsJob }
  | { name: typeof JobName.RefillPool; data: RefillPoolJob };

export type JobData<N extends JobName> = Extract<JobItem, { name: N }>['data'];

/** Validates a job's payload against its name; throws a ZodError naming the field. */
export function parseJob<N extends JobName>(name: N, data: unknown): JobData<N> {
  const job = JOBS[name];
  if (!job) throw new Error(`Unknown job name: ${name}`);
  return (job.schema as z.ZodType).parse(data) as JobData<N>;
}

/** Expiry job id of a session: derived, so it can be found, moved and removed by session id. */
export const expiryJobId = (sessionId: string) => `expire-${sessionId}`;

/** A job ready to be enqueued (`enqueue` of @velocity/ops): its name, its payload, and its BullMQ options. */
export type QueuedJob = { [N in JobName]: { name: N; data: JobData<N>; opts: JobsOptions } }[JobName];

/** Every job the system enqueues, each with its options, written here once for all its producers. */
export const jobs = {
  /**
   * Provisioning: job id = session id, so BullMQ ignores a second add while one is there (the api's,
   * cleanup's recovery of a lost one); tried PROVISION_ATTEMPTS times with exponential backoff.
   */
  provisionSession: (data: ProvisionSessionJob, config: Pick<Config, 'PROVISION_ATTEMPTS' | 'PROVISION_BACKOFF_MS'>): QueuedJob => ({
    name: JobName.ProvisionSession,
    data,
    opts: {
      jobId: data.sessionId,
      attempts: config.PROVISION_ATTEMPTS,
      backoff: { type: 'exponential', delay: config.PROVISION_BACKOFF_MS },
      removeOnComplete: { age: 3600 },
      removeOnFail: { age: 24 * 3600 },
    },
  }),
  /** The session's expiry, delayed to its `expires_at`, under expiryJobId. */
  expireSession: (sessionId: string, expiresAt: string, now = Date.now()): QueuedJob => ({
    name: JobName.ExpireSession,
    data: { sessionId, reason: 'expired' },
    opts: { jobId: expiryJobId(sessionId), delay: Math.max(0, Date.parse(expiresAt) - now), removeOnComplete: true, removeOnFail: 1000 },
  }),
  /** A stop (DELETE /v1/sessions/:id): at once, under an id of its own, so a pending expiry job cannot swallow it. */
  stopSession: (sessionId: string): QueuedJob => ({
    name: JobName.ExpireSession,
    data: { sessionId, reason: 'stopped' },
    opts: { jobId: `stop-${sessionId}`, removeOnComplete: true, removeOnFail: 1000, attempts: 3, backoff: { type: 'exponential', delay: 500 } },
  }),
};
