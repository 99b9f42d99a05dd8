import { TimeoutError, errorMessage, sleep, type SessionEvent } from '@velocity/shared';
import type { ProvisionContext, Step } from './provision-context';
import { ensureProjectStep } from './steps/ensure-project.step';
import { commitSessionStep } from './steps/commit-session.step';
import { createMachineStep } from './steps/create-machine.step';
import { verifyUrlStep } from './steps/verify-url.step';
import { activateStep } from './steps/activate.step';

/** The provisioning steps, in the order the one rule demands (design.md). */
export const PROVISION_PIPELINE: readonly Step[] = [
  ensureProjectStep,
  commitSessionStep,
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
  const deadline = ctx.job.requestedAt + ctx.deps.config.PROVISION_DEADLINE_MS;
  for (const step of steps) {
    if (ctx.deps.faults?.stepDelayMs) await sleep(ctx.deps.faults.stepDelayMs, ctx.signal);
    const started = Date.now();
    await emit(ctx, { type: 'progress', step: step.name, state: 'started', attempt: ctx.attempt });
    const budget = Math.min(step.timeoutMs(ctx.deps.config), deadline - started);
    try {
      if (budget <= 0) throw new TimeoutError('the provisioning deadline', ctx.deps.config.PROVISION_DEADLINE_MS);
      await runStep(ctx, step, budget);
    } catch (err) {
      throw new StepFailedError(step.name, err);
    }
    const ms = Date.now() - started;
    ctx.logger.info('step done', { step: step.name, ms, attempt: ctx.attempt });
    ctx.deps.observer?.stepDone(step.name, ms);
    // Held back: it is stored with the next event (the next step's `started`, or `ready`), in one round trip.
    await emit(ctx, { type: 'progress', step: step.name, state: 'done', ms, attempt: ctx.attempt }, { hold: true });
  }
}

/**
 * One step under its own abort signal: aborted when the job is (shutdown) or
 * when the step overruns its budget, so waits inside it end and say why.
 */
async function runStep(ctx: ProvisionContext, step: Step, budgetMs: number): Promise<void> {
  const jobSignal = ctx.signal;
  const controller = new AbortController();
  const onJobAbort = () => controller.abort(jobSignal.reason);
  jobSignal.addEventListener('abort', onJobAbort, { once: true });
  const timer = setTimeout(() => controller.abort(new TimeoutError(`step ${step.name}`, budgetMs + STEP_GRACE_MS)), budgetMs + STEP_GRACE_MS);
  const aborted = new Promise<never>((_, reject) => controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true }));
  ctx.signal = controller.signal;
  try {
    await Promise.race([step.run(ctx, budgetMs), aborted]);
  } finally {
    clearTimeout(timer);
    jobSignal.removeEventListener('abort', onJobAbort);
    ctx.signal = jobSignal;
  }
}

type NewEvent = SessionEvent extends infer E ? (E extends SessionEvent ? Omit<E, 'sessionId' | 'at'> : never) : never;

/**
 * Stores the event, after any held back; with `hold`, keeps it to go with the
 * next one instead (an event held when the job ends is lost, which only costs
 * a progress line).
 */
export async function emit(ctx: ProvisionContext, event: NewEvent, options: { hold?: boolean } = {}): Promise<void> {
  const full = { ...event, sessionId: ctx.job.sessionId, at: Date.now() } as SessionEvent;
  if (options.hold) {
    (ctx.held ??= []).push(full);
    return;
  }
  const events = [...(ctx.held ?? []), full];
  await ctx.deps.events.appendAll(events);
  // Cleared once stored: a failed store keeps them for the next try.
  ctx.held = undefined;
}
