import { PermanentError, jobs } from '@velocity/contracts';
import { enqueue } from '@velocity/ops';
import { required, type Step } from '../provision-context';

/** The row says `active` with its `expires_at`, and the expiry job is scheduled for that moment. */
export const activateStep: Step = {
  name: 'activate',
  timeoutMs: (config) => config.PROVISION_DEADLINE_MS,
  async run(ctx) {
    const { store, cleanupQueue, config } = ctx.deps;
    const session = required(ctx.session, 'the session row');
    const previewUrl = required(ctx.previewUrl, 'the verified preview URL');
    const active =
      (await store.transition(session.id, 'active', { previewUrl, ttlSeconds: config.SESSION_TTL_SECONDS })) ??
      (await store.getSession(session.id));
    if (active?.status !== 'active' || !active.expiresAt) {
      throw new PermanentError(`Session ${session.id} could not become active (status ${active?.status ?? 'missing'})`);
    }
    await enqueue(cleanupQueue, jobs.expireSession(session.id, active.expiresAt));
    ctx.session = active;
  },
};
