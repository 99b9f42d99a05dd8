import { TimeoutError, errorMessage, provisioningLimitMs, sleep, type SessionEvent } from '@velocity/contracts';
import type { ProvisionContext, Step, StepDetail } from './provision-context';
import { ensureProjectStep } from './steps/ensure-project.step';
import { commitSessionStep } from './steps/commit-session.step';
import { createMachineStep } from './steps/create-machine.step';
import { verifyUrlStep } from './steps/verify-url.step';
import { installDependenciesStep } from './steps/install-dependencies.step';
import { activateStep } from './steps/activate.step';

/** The provisioning steps, in the order the one rule demands. */
export const PROVISION_PIPELINE: readonly Step[] = [
  ensureProjectStep,
  commitSessionStep,
  installDependenciesStep,
  createMachineStep,
  verifyUrlStep,
  activateStep,
];

/** Past its budget, a step that does not give up by itself is abandoned after this much more. */
const STEP_GRACE_MS = 2000;

/** Thrown by `runPipeline`: which step failed, and why. */
export class StepFailedError extends Error {
  constructor(readonly step: Step['name'], readonly cause: unknown) {
    super(`${step}: ${errorMessage(cause)}`);
    this.name = 'StepFailedError';
  }
}

/**
 * Runs the steps top to bottom, each within its own budget and the overall
 * deadline, and stores a progress event before and after each one.
 */
export async function runPipeline(ctx: ProvisionContext, steps: readonly Step[] = PROVISION_PIPELINE): Promise<void> {
  // One limit for every attempt, the same cleanup reaps by: room for a dependency install included.
  const limitMs = provisioningLimitMs(ctx.deps.config);
  const deadline = ctx.job.requestedAt + limitMs;
  for (const step of steps) {
    if (ctx.deps.faults?.stepDelayMs) await sleep(ctx.deps.faults.stepDelayMs, ctx.signal);
    const started = Date.now();
    await emit(ctx, { type: 'progress', step: step.name, state: 'started', attempt: ctx.attempt });
    const budget = Math.min(step.timeoutMs(ctx.deps.config), deadline - started);
    let detail: StepDetail | void;
    ctx.reportProgress = (progress) => void emit(ctx, { type: 'progress', step: step.name, state: 'running', ...progress, attempt: ctx.attempt });
    try {
      if (budget <= 0) throw new TimeoutError('the provisioning deadline', limitMs);
      detail = await runStep(ctx, step, budget);
    } catch (err) {
      throw new StepFailedError(step.name, err);
    } finally {
      ctx.reportProgress = undefined;
    }
    const ms = Date.now() - started;
    ctx.logger.info('step done', { step: step.name, ms, attempt: ctx.attempt, ...detail });
    ctx.deps.observer?.stepDone(step.name, ms);
    await emit(ctx, { type: 'progress', step: step.name, state: 'done', ms, ...detail, attempt: ctx.attempt });
  }
}

/**
 * One step under its own abort signal: aborted when the job is (shutdown) or
 * when the step overruns its budget, so waits inside it end and say why.
 */
async function runStep(ctx: ProvisionContext, step: Step, budgetMs: number): Promise<StepDetail | void> {
  const jobSignal = ctx.signal;
  const controller = new AbortController();
  const onJobAbort = () => controller.abort(jobSignal.reason);
  jobSignal.addEventListener('abort', onJobAbort, { once: true });
  const timer = setTimeout(() => controller.abort(new TimeoutError(`step ${step.name}`, budgetMs + STEP_GRACE_MS)), budgetMs + STEP_GRACE_MS);
  const aborted = new Promise<never>((_, reject) => controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true }));
  ctx.signal = controller.signal;
  try {
    return await Promise.race([step.run(ctx, budgetMs), aborted]);
  } finally {
    clearTimeout(timer);
    jobSignal.removeEventListener('abort', onJobAbort);
    ctx.signal = jobSignal;
  }
}

type NewEvent = SessionEvent extends infer E ? (E extends SessionEvent ? Omit<E, 'sessionId' | 'at'> : never) : never;

/**
 * Progress events wait this long to be stored together with the ones that
 * follow: a fast step's `started` and `done` and the next step's `started` go
 * in one round trip (and reach the client in one wake-up), while a slow step's
 * `started` is still seen at once.
 */
export const PROGRESS_COALESCE_MS = 20;

/**
 * Stores a session event. Progress is held back up to PROGRESS_COALESCE_MS and
 * stored with what follows; `ready` and `failed` are stored at once, after
 * everything held. Batches are stored in order.
 */
export async function emit(ctx: ProvisionContext, event: NewEvent): Promise<void> {
  const full = { ...event, sessionId: ctx.job.sessionId, at: Date.now() } as SessionEvent;
  (ctx.held ??= []).push(full);
  if (full.type !== 'progress') return flushEvents(ctx);
  ctx.flushTimer ??= setTimeout(() => {
    void flushEvents(ctx).catch((err: Error) => ctx.logger.warn('progress events not stored', { err }));
  }, ctx.deps.progressCoalesceMs ?? PROGRESS_COALESCE_MS);
}

/** Stores what is held now, after any batch still being stored. A failed batch keeps its progress events for the next one. */
export function flushEvents(ctx: ProvisionContext): Promise<void> {
  clearTimeout(ctx.flushTimer);
  ctx.flushTimer = undefined;
  const batch = ctx.held ?? [];
  ctx.held = undefined;
  const stored = (ctx.flushing ?? Promise.resolve())
    .catch(() => undefined)
    .then(async () => {
      if (batch.length === 0) return;
      try {
        await ctx.deps.events.appendAll(batch);
      } catch (err) {
        // `ready` / `failed` are emitted again by whoever retries; progress is kept to go with the next batch.
        ctx.held = [...batch.filter((e) => e.type === 'progress'), ...(ctx.held ?? [])];
        throw err;
      }
    });
  ctx.flushing = stored;
  return stored;
}
