import { provisioningLimitMs } from '@velocity/contracts';
import { machineOfSession } from '@velocity/machines';
import { type PreviewSession } from '@velocity/session-store';
import { SWEEP_CONCURRENCY, eachLimited, type CleanupDeps } from './cleanup-deps';

export type ReapStuckSessionsDeps = Pick<CleanupDeps, 'store' | 'provider' | 'events' | 'logger' | 'config' | 'sessionsQueue'>;

/** Time past the provisioning limit (provisioningLimitMs) a session gets before it counts as stuck: the pipeline's own undo goes first. */
export const STUCK_GRACE_MS = 15_000;

/**
 * Sessions still `queued`, `creating` or `starting` past the provisioning
 * deadline (from created_at) plus a grace: the provisioner that had them died or
 * lost them. Each becomes `error` ("provisioning timed out at <status>"), its
 * machine is destroyed, its job removed, and a retryable `failed` event stored.
 * The status change is one conditional statement, so replicas reap each once.
 */
export class ReapStuckSessions {
  constructor(private readonly deps: ReapStuckSessionsDeps, private readonly graceMs = STUCK_GRACE_MS) {}

  async execute(now = new Date()): Promise<{ reaped: number }> {
    const { store, config } = this.deps;
    const createdBefore = new Date(now.getTime() - provisioningLimitMs(config) - this.graceMs);
    const tried = new Set<string>();
    let reaped = 0;
    for (;;) {
      const batch = await store.listStuckSessions(createdBefore, config.CLEANUP_BATCH_SIZE);
      const fresh = batch.filter((s) => !tried.has(s.id));
      if (fresh.length === 0) break;
      for (const s of fresh) tried.add(s.id);
      await eachLimited(fresh, SWEEP_CONCURRENCY, async (session) => {
        try {
          if (await this.reap(session, createdBefore)) reaped += 1;
        } catch (err) {
          this.deps.logger.error('could not reap stuck session', { sessionId: session.id, err });
        }
      });
      if (batch.length < config.CLEANUP_BATCH_SIZE) break;
    }
    return { reaped };
  }

  private async reap(session: PreviewSession, createdBefore: Date): Promise<boolean> {
    const { store, provider, events, sessionsQueue } = this.deps;
    const failed = await store.failStuckSession(session.id, createdBefore);
    if (!failed) return false;
    // A job still waiting would only find the row failed; one running fails on its own (its next write is refused).
    await sessionsQueue.remove(session.id).catch(() => 0);
    const machine = await machineOfSession(provider, failed);
    if (machine) await provider.destroy(machine.id);
    const reason = failed.errorMessage ?? `provisioning timed out at ${session.status}`;
    await events.append({ type: 'failed', sessionId: session.id, at: Date.now(), reason, retryable: true });
    this.deps.logger.warn('stuck session reaped', { sessionId: session.id, status: session.status, reason, machineId: machine?.id ?? null });
    return true;
  }
}
