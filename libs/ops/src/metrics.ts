import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Queue, Worker } from 'bullmq';
import { PermanentError, TimeoutError, isRetryable, withTimeout, SESSION_STATUSES, TERMINAL_STATUSES, type SessionStatus } from '@velocity/contracts';
import type { Logger } from '@velocity/runtime';

/**
 * Prometheus metrics (prom-client). Each process has its own registry, labelled
 * with its app, exposed at its /metrics behind the operator guard:
 *
 * - api: `vp_queue_jobs{queue,state}` (BullMQ getJobCounts on scrape),
 *   `vp_sessions{status}` (one grouped query on scrape), `vp_http_request_seconds`.
 * - provisioner: `vp_provision_step_seconds{step}`, `vp_time_to_ready_seconds`,
 *   `vp_provision_failures_total{step,reason}`, `vp_provision_retries_total{step,reason}`,
 *   observed where the steps run; `vp_worker_jobs_total`.
 * - cleanup: `vp_worker_jobs_total{queue,name,outcome}`.
 * - every process: Node's default process metrics.
 *
 * Prometheus scrapes every process; sums across provisioner replicas are queries
 * (`sum by (le, step) (rate(vp_provision_step_seconds_bucket[5m]))`).
 */
export function createMetricsRegistry(app: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ app });
  collectDefaultMetrics({ register: registry });
  return registry;
}

/** Step durations run from milliseconds (a row update) to tens of seconds (a cold machine). */
export const STEP_SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60];
/** Time to ready: the target is a second or two; the deadline is a minute. */
export const TIME_TO_READY_BUCKETS = [0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 30, 60];

/** Why provisioning failed, as a small closed set (never free text: labels must stay few). */
export type FailureReason = 'timeout' | 'permanent' | 'transient';

export function failureReason(error: unknown): FailureReason {
  if (error instanceof TimeoutError) return 'timeout';
  if (error instanceof PermanentError || !isRetryable(error)) return 'permanent';
  return 'transient';
}

/** The provisioner's metrics; `ProvisionObserver` of apps/provisioner feeds them. */
export class ProvisionMetrics {
  readonly stepSeconds: Histogram<'step'>;
  readonly timeToReadySeconds: Histogram;
  readonly failures: Counter<'step' | 'reason'>;
  readonly retries: Counter<'step' | 'reason'>;

  constructor(registry: Registry) {
    this.stepSeconds = new Histogram({
      name: 'vp_provision_step_seconds',
      help: 'Duration of each provisioning step that completed, by step',
      labelNames: ['step'],
      buckets: STEP_SECONDS_BUCKETS,
      registers: [registry],
    });
    this.timeToReadySeconds = new Histogram({
      name: 'vp_time_to_ready_seconds',
      help: 'From POST /v1/sessions (the job\'s requestedAt) to the ready event, per session that became ready',
      buckets: TIME_TO_READY_BUCKETS,
      registers: [registry],
    });
    this.failures = new Counter({
      name: 'vp_provision_failures_total',
      help: 'Sessions whose provisioning failed for good, by the step that failed and why (timeout, permanent, transient)',
      labelNames: ['step', 'reason'],
      registers: [registry],
    });
    this.retries = new Counter({
      name: 'vp_provision_retries_total',
      help: 'Provisioning attempts that failed and were retried, by step and reason',
      labelNames: ['step', 'reason'],
      registers: [registry],
    });
  }
}

/** Jobs a worker finished, by queue, job name and outcome (completed/failed). */
export function instrumentWorker(registry: Registry, worker: Worker, queue: string): void {
  const counter =
    (registry.getSingleMetric('vp_worker_jobs_total') as Counter<'queue' | 'name' | 'outcome'> | undefined) ??
    new Counter({
      name: 'vp_worker_jobs_total',
      help: 'Jobs this worker finished, by queue, job name and outcome',
      labelNames: ['queue', 'name', 'outcome'],
      registers: [registry],
    });
  worker.on('completed', (job) => counter.inc({ queue, name: job.name, outcome: 'completed' }));
  worker.on('failed', (job) => counter.inc({ queue, name: job?.name ?? 'unknown', outcome: 'failed' }));
}

/** A scrape must answer even when Redis or Postgres does not: a collector gives up after this long. */
const COLLECT_TIMEOUT_MS = 2000;

function collectFailures(registry: Registry): Counter<'collector'> {
  return (
    (registry.getSingleMetric('vp_metrics_collect_failures_total') as Counter<'collector'> | undefined) ??
    new Counter({
      name: 'vp_metrics_collect_failures_total',
      help: 'Scrapes on which a collector (queues, sessions) could not read its source; its gauge is empty then',
      labelNames: ['collector'],
      registers: [registry],
    })
  );
}

/** `vp_queue_jobs{queue,state}`: job counts of every queue, read from BullMQ on each scrape. */
export function registerQueueGauge(registry: Registry, queues: () => readonly Queue[], logger?: Logger): Gauge<'queue' | 'state'> {
  const failures = collectFailures(registry);
  return new Gauge({
    name: 'vp_queue_jobs',
    help: 'Jobs in each queue by state (waiting is the queue depth), read from BullMQ on scrape',
    labelNames: ['queue', 'state'],
    registers: [registry],
    async collect() {
      this.reset();
      try {
        const counts = await withTimeout(Promise.all(queues().map(async (q) => [q.name, await q.getJobCounts()] as const)), COLLECT_TIMEOUT_MS, 'queue job counts');
        for (const [queue, byState] of counts) for (const [state, n] of Object.entries(byState)) this.set({ queue, state }, n);
      } catch (err) {
        failures.inc({ collector: 'queues' });
        logger?.warn('metrics: could not read queue counts', { err: err as Error });
      }
    },
  });
}

/** Statuses of sessions still alive (ended and error are history: see vp_provision_failures_total). */
export const LIVE_SESSION_STATUSES: readonly SessionStatus[] = SESSION_STATUSES.filter((s) => !TERMINAL_STATUSES.includes(s));

/** `vp_sessions{status}`: live sessions by status, one grouped query on each scrape. */
export function registerSessionGauge(
  registry: Registry,
  countLive: () => Promise<Partial<Record<SessionStatus, number>>>,
  logger?: Logger,
): Gauge<'status'> {
  const failures = collectFailures(registry);
  return new Gauge({
    name: 'vp_sessions',
    help: 'Live sessions by status (queued, creating, starting, active, ending), from the database on scrape',
    labelNames: ['status'],
    registers: [registry],
    async collect() {
      this.reset();
      try {
        const counts = await withTimeout(countLive(), COLLECT_TIMEOUT_MS, 'session counts');
        for (const status of LIVE_SESSION_STATUSES) this.set({ status }, counts[status] ?? 0);
      } catch (err) {
        failures.inc({ collector: 'sessions' });
        logger?.warn('metrics: could not count sessions', { err: err as Error });
      }
    },
  });
}
