import { PermanentError, isTerminal, resourceLimitsOf } from '@velocity/contracts';
import type { Step } from '../provision-context';

/**
 * The session row is committed and says `creating` before any machine exists.
 * The api recorded it `queued`; a row that is missing (an older api) is made here.
 */
export const commitSessionStep: Step = {
  name: 'commit-session',
  timeoutMs: (config) => config.PROVISION_DEADLINE_MS,
  async run(ctx) {
    const { store } = ctx.deps;
    const { sessionId, projectId, tier } = ctx.job;
    const session =
      // The usual case, one statement: the api's `queued` row becomes `creating`.
      (await store.transition(sessionId, 'creating')) ??
      // A retry (already `creating` or further), or one whose status changed meanwhile (cancelled).
      (await store.getSession(sessionId)) ??
      (await store.createSession({ id: sessionId, projectId, tier, resourceLimits: resourceLimitsOf(tier), status: 'creating' }));
    if (isTerminal(session.status) || session.status === 'ending') {
      throw new PermanentError(`Session ${sessionId} is already ${session.status}`);
    }
    ctx.session = session;
  },
};
