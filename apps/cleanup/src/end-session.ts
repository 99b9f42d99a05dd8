import type { EventLog } from '@velocity/ops';
import type { Logger } from '@velocity/runtime';
import type { MachineProvider } from '@velocity/machines';
import type { SessionQueries, SessionRecords, SessionSweeps } from '@velocity/session-store';

export interface EndSessionDeps {
  store: SessionRecords & SessionQueries & SessionSweeps;
  provider: MachineProvider;
  events: EventLog;
  logger: Logger;
}

export type EndSessionResult = 'ended' | 'not-active';

/**
 * Ends one active session: row `ending`, machine destroyed, row `ended`. The
 * `active -> ending` move is the claim: of two callers racing, one wins and the
 * other finds nothing to do.
 */
export class EndSession {
  constructor(private readonly deps: EndSessionDeps) {}

  async execute(sessionId: string, reason: string): Promise<EndSessionResult> {
    const { store, provider, events } = this.deps;
    const logger = this.deps.logger.child({ sessionId });
    const ending = await store.transition(sessionId, 'ending');
    if (!ending) return 'not-active';
    await events.append({ type: 'ending', sessionId, at: Date.now(), reason });
    if (ending.containerId) await provider.destroy(ending.containerId);
    await store.transition(sessionId, 'ended', { ended: true });
    await events.append({ type: 'ended', sessionId, at: Date.now(), reason });
    logger.info('session ended', { reason, machineId: ending.containerId });
    return 'ended';
  }

  /**
   * Finishes a session that an earlier run left `ending` (its process died, or its
   * destroy failed) and that has not moved since `staleBefore`: claim it, destroy
   * its machine, mark it ended, store `ended` with the reason its `ending` gave.
   */
  async resume(sessionId: string, staleBefore: Date): Promise<EndSessionResult> {
    const { store, provider, events } = this.deps;
    const claimed = await store.claimStaleEnding(sessionId, staleBefore);
    if (!claimed) return 'not-active';
    const ending = (await events.read(sessionId)).map((e) => e.event).filter((e) => e.type === 'ending').pop();
    const reason = ending?.type === 'ending' ? ending.reason : 'resumed';
    if (claimed.containerId) await provider.destroy(claimed.containerId);
    if (!(await store.transition(sessionId, 'ended', { ended: true }))) return 'not-active';
    await events.append({ type: 'ended', sessionId, at: Date.now(), reason });
    this.deps.logger.warn('unfinished session end completed', { sessionId, reason, machineId: claimed.containerId });
    return 'ended';
  }
}
