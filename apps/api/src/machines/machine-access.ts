import { ForbiddenException, GoneException, Inject, Injectable, NotFoundException } from '@nestjs/common';
import { isSessionLive, type Config, type MachineClaims } from '@velocity/contracts';
import { type PreviewSession, type SessionRecords } from '@velocity/session-store';
import { machineClaims } from './machine-auth';
import { CONFIG, SESSION_STORE } from '../tokens';

/**
 * The input that names the session a machine asks with: the path
 * (`/v1/machines/:sessionId/*`), or only its token (`/v1/routes/:routeId`, which
 * asks about other sessions); errors name it as their `field`.
 */
export type SessionField = 'sessionId' | 'authorization';

/** The answers of the live-session check, for the `@ApiEndpoint` errors of a `/v1/machines/:sessionId/*` endpoint. */
export const LIVE_SESSION_ERRORS = {
  403: '`authorization`: the token is for another session or another project',
  404: '`sessionId`: no such session',
  410: '`sessionId`: the session has ended (ending, ended or error) and its machine token no longer works: the machine stops',
} as const;

/** How a message names the session: the one in the path, or the token's own. */
const sessionNamed = (field: SessionField, sessionId: string) => `${field === 'authorization' ? "the token's session" : 'session'} ${sessionId}`;

/** 410: the session is over, so its machine token opens nothing any more. */
export function sessionEnded(sessionId: string, field: SessionField, status?: string): GoneException {
  return new GoneException({
    statusCode: 410,
    error: 'Gone',
    message: `${field}: ${sessionNamed(field, sessionId)} has ended${status ? ` (${status})` : ''}; its machine token no longer works`,
    field,
    sessionId,
    ...(status ? { status } : {}),
  });
}

/**
 * The check itself, on the row of the session the token was issued for (null
 * when there is none): that session, while it is live, of the token's project.
 */
export function liveSessionOf(session: PreviewSession | null, claims: MachineClaims, field: SessionField): PreviewSession {
  if (!session) {
    const message = `${field}: ${sessionNamed(field, claims.sessionId)} does not exist`;
    throw new NotFoundException({ statusCode: 404, error: 'Not Found', message, field, sessionId: claims.sessionId });
  }
  if (session.projectId !== claims.projectId) {
    throw new ForbiddenException({ statusCode: 403, error: 'Forbidden', message: 'authorization: the token is for another project', field: 'authorization' });
  }
  if (!isSessionLive(session.status)) throw sessionEnded(session.id, field, session.status);
  return session;
}

/**
 * What a machine token opens: its own session's endpoints and project, and only
 * while that session is live. A token outlives its session (it is issued for
 * the tier's longest session), so its signature alone is not enough; every
 * machine endpoint checks its caller here.
 */
@Injectable()
export class MachineAccess {
  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(SESSION_STORE) private readonly store: SessionRecords,
  ) {}

  /** The token's claims (401), for `sessionId` when one is given (403); reads nothing. */
  claims(authorization: string | undefined, sessionId?: string): MachineClaims {
    return machineClaims(authorization, this.config.MACHINE_TOKEN_SECRET, sessionId);
  }

  /** The live session the claims were issued for, with one row read: 404, 403 (another project) or 410 otherwise. */
  async liveSession(claims: MachineClaims, field: SessionField = 'sessionId'): Promise<PreviewSession> {
    return liveSessionOf(await this.store.getSession(claims.sessionId), claims, field);
  }

  /** The whole check of a caller of `/v1/machines/:sessionId/*`: its token, for this session, which is live. */
  async open(authorization: string | undefined, sessionId: string): Promise<PreviewSession> {
    return this.liveSession(this.claims(authorization, sessionId));
  }
}
