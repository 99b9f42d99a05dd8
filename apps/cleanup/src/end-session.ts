import type { EventLog, Logger, MachineProvider, SessionStore } from '@velocity/shared';

export interface EndSessionDeps {
  store: SessionStore;
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
}
