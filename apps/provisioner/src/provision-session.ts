import { errorMessage, isRetryable, provisioningLimitMs, type ProvisionSessionJob } from '@velocity/contracts';
import { machineOfSession } from '@velocity/machines';
import { retry, type Logger, type RetryOptions } from '@velocity/runtime';
import { PROVISION_PIPELINE, StepFailedError, emit, flushEvents, runPipeline } from './pipeline';
import type { ProvisionContext, ProvisionDeps } from './provision-context';

export interface ProvisionAttempt {
  job: ProvisionSessionJob;
  /** 1 for the first try. */
  attempt: number;
  /** How many attempts the job has in all. */
  maxAttempts: number;
  signal: AbortSignal;
  logger: Logger;
}

/** The writes of a final failure outlast a short outage of the store or the provider (some 8 s). */
const UNDO_RETRY: RetryOptions = { attempts: 6, initialDelayMs: 250, jitter: false };

export type ProvisionOutcome =
  | { status: 'ready'; previewUrl: string }
  /** The worker is shutting down: the job goes back to the queue as it is, to resume elsewhere. */
  | { status: 'handed-back' }
  | { status: 'retry'; error: Error }
  | { status: 'failed'; error: Error };

/**
 * The provisioning use case: runs the pipeline, and on the last failure undoes
 * what was done (machine destroyed, row `error`) and stores `failed`.
 */
export class ProvisionSession {
  constructor(private readonly deps: ProvisionDeps) {}

  async execute({ job, attempt, maxAttempts, signal, logger }: ProvisionAttempt): Promise<ProvisionOutcome> {
    const ctx: ProvisionContext = { deps: this.deps, job, attempt, signal, logger };
    try {
      ctx.turn = await this.deps.turns?.take(job.requestedAt, signal);
      await runPipeline(ctx, PROVISION_PIPELINE);
      const session = ctx.session!;
      const diagnostics = ctx.diagnostics ?? [];
      await emit(ctx, { type: 'ready', previewUrl: session.previewUrl!, expiresAt: session.expiresAt!, pooled: Boolean(ctx.routeId && ctx.routeId !== session.id), diagnostics });
      logger.info('session ready', { previewUrl: session.previewUrl, ms: Date.now() - job.requestedAt, diagnostics: diagnostics.length });
      this.deps.observer?.ready(Date.now() - job.requestedAt);
      return { status: 'ready', previewUrl: session.previewUrl! };
    } catch (err) {
      if (signal.aborted) {
        logger.info('provisioning handed back', { attempt });
        return { status: 'handed-back' };
      }
      const error = err instanceof Error ? err : new Error(String(err));
      const cause = err instanceof StepFailedError ? err.cause : err;
      const retryable = isRetryable(cause);
      const retrying = retryable && attempt < maxAttempts && this.nextAttemptInTime(job, attempt);
      this.deps.observer?.failed(err instanceof StepFailedError ? err.step : undefined, cause, !retrying);
      if (retrying) {
        logger.warn('provisioning attempt failed, will retry', { attempt, maxAttempts, err: error });
        return { status: 'retry', error };
      }
      await this.undo(ctx, err instanceof StepFailedError ? err.step : undefined, errorMessage(error), retryable);
      return { status: 'failed', error };
    } finally {
      ctx.turn?.release();
      // Nothing of this attempt is left to be stored after it (a retry's events come after these).
      await flushEvents(ctx).catch((err: Error) => logger.warn('progress events not stored', { err }));
    }
  }

  /**
   * Whether the next attempt would start (after BullMQ's exponential backoff)
   * before the provisioning deadline. One that would not is not made: it would
   * fail at once, blaming its first step, and hide this attempt's reason.
   */
  private nextAttemptInTime(job: ProvisionSessionJob, attempt: number): boolean {
    const backoffMs = this.deps.config.PROVISION_BACKOFF_MS * 2 ** (attempt - 1);
    return Date.now() + backoffMs < job.requestedAt + provisioningLimitMs(this.deps.config);
  }

  /**
   * Final failure: nothing of this session may keep running, and the client
   * hears why. Each write is retried, so a short outage does not leave it half done.
   */
  private async undo(ctx: ProvisionContext, step: StepFailedError['step'] | undefined, reason: string, retryable: boolean) {
    const { provider, store } = this.deps;
    const { sessionId } = ctx.job;
    const row = await retry(() => store.getSession(sessionId), UNDO_RETRY);
    const machine = await retry(() => machineOfSession(provider, { id: sessionId, containerId: row?.containerId ?? null }), UNDO_RETRY);
    if (machine) await retry(() => provider.destroy(machine.id), UNDO_RETRY);
    await retry(() => store.transition(sessionId, 'error', { errorMessage: reason, ...(step ? { errorStep: step } : {}) }), UNDO_RETRY);
    await retry(() => emit(ctx, { type: 'failed', ...(step ? { step } : {}), reason, retryable }), UNDO_RETRY);
    ctx.logger.error('session failed', { step, reason, machineDestroyed: Boolean(machine) });
  }
}
