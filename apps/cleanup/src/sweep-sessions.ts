import { TIERS, expiryJobId, idleSecondsOf } from '@velocity/contracts';
import { type PreviewSession } from '@velocity/session-store';
import { SWEEP_CONCURRENCY, eachLimited, type CleanupDeps } from './cleanup-deps';
import { EndSession } from './end-session';

export type SweepSessionsDeps = Pick<CleanupDeps, 'store' | 'provider' | 'events' | 'logger' | 'config' | 'cleanupQueue'>;

export interface SweepSessionsResult {
  /** Sessions this sweep ended because their time was up (the delayed job had not done it). */
  expired: number;
  /** Sessions this sweep ended because no activity was reported within their tier's idle limit. */
  idle: number;
  /** Sessions left `ending` longer than ORPHAN_GRACE_MS (a cleanup died midway) that this sweep finished. */
  resumed: number;
}

/**
 * The sweep's share of ending sessions: every active session past `expires_at`
 * (what a delayed expiry job missed), then every active session idle past its
 * tier's limit, then every session left `ending` by a cleanup that died midway. Reads in batches of CLEANUP_BATCH_SIZE through the partial
 * indexes, so a sweep costs what has expired, not the size of the table.
 * EndSession's claim makes it safe against the delayed jobs and other replicas.
 */
export class SweepSessions {
  private readonly endSession: EndSession;

  constructor(private readonly deps: SweepSessionsDeps) {
    this.endSession = new EndSession(deps);
  }

  async execute(now = new Date()): Promise<SweepSessionsResult> {
    const { store, config } = this.deps;
    const expired = await this.drain((limit) => store.listExpiredSessions(now, limit), 'expired');
    let idle = 0;
    for (const tier of TIERS) {
      const idleSince = new Date(now.getTime() - idleSecondsOf(tier, config.IDLE_TIMEOUT_SECONDS) * 1000);
      idle += await this.drain((limit) => store.listIdleSessions(tier, idleSince, limit), 'idle');
    }
    const staleBefore = new Date(now.getTime() - config.ORPHAN_GRACE_MS);
    const resumed = await this.drain((limit) => store.listStaleEndingSessions(staleBefore, limit), 'resume', staleBefore);
    return { expired, idle, resumed };
  }

  /**
   * Ends what `list` returns, batch after batch, until a batch is short or holds
   * only sessions already tried (one that could not be ended stays in the index).
   */
  private async drain(list: (limit: number) => Promise<PreviewSession[]>, reason: 'expired' | 'idle' | 'resume', staleBefore?: Date): Promise<number> {
    const { config, cleanupQueue, logger } = this.deps;
    const batchSize = config.CLEANUP_BATCH_SIZE;
    const tried = new Set<string>();
    let ended = 0;
    for (;;) {
      const batch = await list(batchSize);
      const fresh = batch.filter((s) => !tried.has(s.id));
      if (fresh.length === 0) break;
      for (const s of fresh) tried.add(s.id);
      await eachLimited(fresh, SWEEP_CONCURRENCY, async (session) => {
        try {
          const result =
            reason === 'resume' ? await this.endSession.resume(session.id, staleBefore!) : await this.endSession.execute(session.id, reason);
          if (result !== 'ended') return;
          ended += 1;
          // Its delayed expiry job would find nothing to do; it need not wait in Redis (0 when it is running).
          await cleanupQueue.remove(expiryJobId(session.id)).catch(() => 0);
        } catch (err) {
          logger.error('sweep could not end session', { sessionId: session.id, reason, err });
        }
      });
      if (batch.length < batchSize) break;
    }
    return ended;
  }
}
