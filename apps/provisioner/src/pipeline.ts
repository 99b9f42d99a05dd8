import { TimeoutError, errorMessage, withTimeout, type SessionEvent } from '@velocity/shared';
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

const STEP_GRACE_MS = 2000;

/** Thrown by `runPipeline`: which step failed, and why. */
export class StepFailedError extends Error {
  constructor(readonly step: Step['name'], readonly cause: unknown) {
    super(`${step}: ${errorMessage(cause)}`);
    this.name = 'StepFailedError';
  }
}

/**
 * Runs the steps top to bottom, each within its own timeout and the overall
 * deadline, and stores a progress event before and after each one.
 */
export async function runPipeline(ctx: ProvisionContext, steps: readonly Step[] = PROVISION_PIPELINE): Promise<void> {
  const deadline = ctx.job.requestedAt + ctx.deps.config.PROVISION_DEADLINE_MS;
  for (const step of steps) {
    const started = Date.now();
    await emit(ctx, { type: 'progress', step: step.name, state: 'started', attempt: ctx.attempt });
    const budget = Math.min(step.timeoutMs(ctx.deps.config), deadline - started);
    try {
      if (budget <= 0) throw new TimeoutError('the provisioning deadline', ctx.deps.config.PROVISION_DEADLINE_MS);
      // The step watches its own budget and says what it waited for; this is the backstop.
      await withTimeout(step.run(ctx, budget), budget + STEP_GRACE_MS, `step ${step.name}`);
    } catch (err) {
      throw new StepFailedError(step.name, err);
    }
    const ms = Date.now() - started;
    ctx.logger.info('step done', { step: step.name, ms });
    await emit(ctx, { type: 'progress', step: step.name, state: 'done', ms, attempt: ctx.attempt });
  }
}

type NewEvent = SessionEvent extends infer E ? (E extends SessionEvent ? Omit<E, 'sessionId' | 'at'> : never) : never;

export function emit(ctx: ProvisionContext, event: NewEvent): Promise<string> {
  return ctx.deps.events.append({ ...event, sessionId: ctx.job.sessionId, at: Date.now() } as SessionEvent);
}
