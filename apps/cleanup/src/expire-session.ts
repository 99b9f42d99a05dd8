import { expireSessionJobSchema, type ExpireSessionJob } from '@velocity/contracts';
import { machineOfSession, type MachineProvider } from '@velocity/machines';
import { type EventLog } from '@velocity/ops';
import { type Logger } from '@velocity/runtime';
import type { SessionQueries, SessionRecords, SessionSweeps } from '@velocity/session-store';
import { EndSession } from './end-session';

/** The `expire-session` job's payload (declared with the other jobs in libs/contracts). */
export const expireJobSchema = expireSessionJobSchema;
export type ExpireJob = ExpireSessionJob;

export type ExpireSessionResult =
  | { result: 'ended' }
  /** The row's `expires_at` is later than now (the session was extended): run again at `dueAt`. */
  | { result: 'not-due'; dueAt: number }
  /** A stopped session that was cancelled while provisioning: its machine, if any, destroyed. */
  | { result: 'cancelled'; machineDestroyed: boolean }
  | { result: 'nothing-to-do'; status: string };

export interface ExpireSessionDeps {
  store: SessionRecords & SessionQueries & SessionSweeps;
  provider: MachineProvider;
  events: EventLog;
  logger: Logger;
}

/**
 * One session's expiry or stop job. The delayed job and the sweep race for the
 * same session: EndSession's `active -> ending` claim lets one win; the other
 * finds nothing to do. A delayed job that comes due before the row's
 * `expires_at` (the session was extended and the job could not be moved) does
 * not end it: it asks to be run again at the new time.
 */
export class ExpireSession {
  private readonly endSession: EndSession;

  constructor(private readonly deps: ExpireSessionDeps) {
    this.endSession = new EndSession(deps);
  }

  async execute({ sessionId, reason }: ExpireJob, now = Date.now()): Promise<ExpireSessionResult> {
    const { store, provider } = this.deps;
    const logger = this.deps.logger.child({ sessionId });
    const session = await store.getSession(sessionId);
    if (!session) return { result: 'nothing-to-do', status: 'missing' };

    if (session.status === 'active') {
      const dueAt = session.expiresAt ? Date.parse(session.expiresAt) : now;
      if (reason === 'expired' && dueAt > now) {
        logger.info('expiry job early: session was extended', { dueAt: new Date(dueAt).toISOString() });
        return { result: 'not-due', dueAt };
      }
      const ended = await this.endSession.execute(sessionId, reason);
      return ended === 'ended' ? { result: 'ended' } : { result: 'nothing-to-do', status: 'not-active' };
    }

    // Stopped while provisioning: the api failed the row; whatever machine was made goes too.
    if (reason === 'stopped' && session.status === 'error') {
      const machine = await machineOfSession(provider, session);
      if (machine) await provider.destroy(machine.id);
      logger.info('cancelled session cleaned up', { machineId: machine?.id ?? null });
      return { result: 'cancelled', machineDestroyed: Boolean(machine) };
    }
    return { result: 'nothing-to-do', status: session.status };
  }
}
