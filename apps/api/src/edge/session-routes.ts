import { Inject, Injectable } from '@nestjs/common';
import { isSessionLive } from '@velocity/contracts';
import { type SessionQueries } from '@velocity/session-store';
import { GoneSessions } from '../common/gone-sessions';
import { SESSION_STORE } from '../tokens';

export type Route =
  | { kind: 'route'; target: string }
  | { kind: 'unknown' }
  /** The session ended or failed: its URL is gone for good. */
  | { kind: 'gone' };

/** How long an active route is kept without news of its session; ending sessions are dropped at once. */
const ACTIVE_ROUTE_TTL_MS = 60_000;

/**
 * Session id → machine address, for the local edge. An active session's route
 * is looked up once and kept: no database query per request. It is dropped the
 * moment the session ends (the event log announces it on a channel), or when
 * its machine stops answering. A session still starting (only the
 * provisioner's verification reaches it then) is looked up each time.
 */
@Injectable()
export class SessionRoutes {
  /** By route id (the id in the URL); `sessionId` lets an ended session's route be dropped. */
  private readonly cache = new Map<string, { target: string; until: number; sessionId: string }>();
  private readonly routeOfSession = new Map<string, string>();

  constructor(
    @Inject(SESSION_STORE) private readonly store: SessionQueries,
    gone: GoneSessions,
  ) {
    // A missed announcement is covered by the TTL.
    gone.onEvery((sessionId) => this.forget(sessionId));
  }

  /** `routeId`: the id in the preview's origin (`<routeId>.<preview domain>`), the session's own or its pooled machine's. */
  async resolve(routeId: string): Promise<Route> {
    const cached = this.cache.get(routeId);
    if (cached && cached.until > Date.now()) return { kind: 'route', target: cached.target };
    this.drop(routeId);
    const session = await this.store.getSessionByRoute(routeId);
    if (!session) return { kind: 'unknown' };
    if (!isSessionLive(session.status)) return { kind: 'gone' };
    if (!session.containerUrl) return { kind: 'unknown' };
    if (session.status === 'active') {
      this.cache.set(routeId, { target: session.containerUrl, until: Date.now() + ACTIVE_ROUTE_TTL_MS, sessionId: session.id });
      this.routeOfSession.set(session.id, routeId);
    }
    return { kind: 'route', target: session.containerUrl };
  }

  /** Drops the route of a session (by session id, as the gone channel names it, or by route id). */
  forget(id: string): void {
    this.drop(this.routeOfSession.get(id) ?? id);
  }

  /** Whether a route is held in memory (for tests and metrics). */
  isCached(routeId: string): boolean {
    return this.cache.has(routeId);
  }

  private drop(routeId: string): void {
    const entry = this.cache.get(routeId);
    if (entry) this.routeOfSession.delete(entry.sessionId);
    this.cache.delete(routeId);
  }
}
