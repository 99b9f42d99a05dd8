import { PermanentError, isTerminal, resourceLimitsOf } from '@velocity/shared';
import type { Step } from '../provision-context';

/** The session row is committed (status `creating`) before any machine exists; a rerun finds it. */
export const commitSessionStep: Step = {
  name: 'commit-session',
  timeoutMs: (config) => config.PROVISION_DEADLINE_MS,
  async run(ctx) {
    const { sessionId, projectId, tier } = ctx.job;
    const session = await ctx.deps.store.createSession({
      id: sessionId,
      projectId,
      tier,
      resourceLimits: resourceLimitsOf(tier),
    });
    if (isTerminal(session.status)) throw new PermanentError(`Session ${sessionId} is already ${session.status}`);
    ctx.session = session;
  },
};
