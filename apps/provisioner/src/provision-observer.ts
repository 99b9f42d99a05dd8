import { failureReason, type ProvisionMetrics } from '@velocity/ops';
import { type ProvisionStep } from '@velocity/contracts';

/**
 * What the pipeline reports as it runs, for metrics: the steps stay free of any
 * metrics code. Every method is called where the outcome is known and must not throw.
 */
export interface ProvisionObserver {
  /** A step finished, after `ms`. */
  stepDone(step: ProvisionStep, ms: number): void;
  /** The session is ready (`ready` stored), `ms` after the client asked. */
  ready(ms: number): void;
  /** An attempt failed at `step` (undefined: before any step); `final`: no retry follows. */
  failed(step: ProvisionStep | undefined, cause: unknown, final: boolean): void;
  /** A warm-pool machine was claimed for a session, in `ms`. */
  poolClaimed?(templateType: string, ms: number): void;
}

/** The observer behind the provisioner's /metrics. */
export function metricsObserver(metrics: ProvisionMetrics): ProvisionObserver {
  return {
    stepDone: (step, ms) => metrics.stepSeconds.observe({ step }, ms / 1000),
    ready: (ms) => metrics.timeToReadySeconds.observe(ms / 1000),
    failed: (step, cause, final) => (final ? metrics.failures : metrics.retries).inc({ step: step ?? 'none', reason: failureReason(cause) }),
  };
}
