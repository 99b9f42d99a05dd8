import { z } from 'zod';

/**
 * The session state machine. Every status change in the system goes through
 * `allowedFrom`, so the rules live here and nowhere else:
 *
 *   queued -> creating -> starting -> active -> ending -> ended
 *   starting -> starting: a machine that died while starting is replaced and recorded
 *   error from any state before active
 */
export const SESSION_STATUSES = ['queued', 'creating', 'starting', 'active', 'ending', 'ended', 'error'] as const;
export const sessionStatusSchema = z.enum(SESSION_STATUSES);
export type SessionStatus = z.infer<typeof sessionStatusSchema>;

const TRANSITIONS: Record<SessionStatus, readonly SessionStatus[]> = {
  queued: ['creating', 'error'],
  creating: ['starting', 'error'],
  starting: ['starting', 'active', 'error'],
  active: ['ending'],
  ending: ['ended'],
  ended: [],
  error: [],
};

/** Statuses from which a session may no longer change. */
export const TERMINAL_STATUSES: readonly SessionStatus[] = ['ended', 'error'];
/** Statuses of a session that is still being provisioned. */
export const PROVISIONING_STATUSES: readonly SessionStatus[] = ['queued', 'creating', 'starting'];
/** Statuses of a session that is over for its machine: nothing more to serve or follow. */
export const SESSION_GONE_STATUSES = ['ending', 'ended', 'error'] as const satisfies readonly SessionStatus[];

export function canTransition(from: SessionStatus, to: SessionStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Every status that may move to `to`; a store updates a row only when it is in one of them. */
export function allowedFrom(to: SessionStatus): SessionStatus[] {
  return SESSION_STATUSES.filter((from) => canTransition(from, to));
}

export function isTerminal(status: SessionStatus): boolean {
  return TERMINAL_STATUSES.includes(status);
}

/** Whether a session's machine still serves it (queued, creating, starting, active): only then does its machine token work. */
export function isSessionLive(status: SessionStatus): boolean {
  return !(SESSION_GONE_STATUSES as readonly SessionStatus[]).includes(status);
}

export class InvalidTransitionError extends Error {
  constructor(readonly sessionId: string, readonly from: SessionStatus | 'missing', readonly to: SessionStatus) {
    super(`Session ${sessionId} cannot move from ${from} to ${to}`);
    this.name = 'InvalidTransitionError';
  }
}
