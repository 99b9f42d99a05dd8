import { Inject, Injectable } from '@nestjs/common';
import { isSessionLive, type Config } from '@velocity/contracts';
import { type SessionQueries } from '@velocity/session-store';
import { GoneSessions } from '../common/gone-sessions';
import { CONFIG, SESSION_STORE } from '../tokens';
import { RouteMisses, clientKeyOf } from './route-misses';

export type Route =
  | { kind: 'route'; target: string }
  | { kind: 'unknown' }
  /** The session ended or failed: its URL is gone for good. */
  | { kind: 'gone' }
  /** The client has had more misses this minute than EDGE_MISSES_PER_MINUTE: nothing was looked up. */
  | { kind: 'limited'; retryAfterSeconds: number };

/** How long an active route is kept without news of its session; ending sessions are dropped at once. */
const ACTIVE_ROUTE_TTL_MS = 60_000;

const UNKNOWN: Route = Object.freeze({ kind: 'unknown' });
const GONE: Route = Object.freeze({ kind: 'gone' });

/**
 * Session id → machine address, for the local edge. An active session's route
 * is looked up once and kept: no database query per request. It is dropped the
 * moment the session ends (the event log announces it on a channel), or when
 * its machine stops answering. A session still starting (only the
 * provisioner's verification reaches it then) is looked up each time. Misses
 * are remembered briefly and budgeted per client (RouteMisses).
 */
@Injectable()
export class SessionRoutes {
  /** By route id (the id in the URL); `sessionId` lets an ended session's route be dropped. */
  private readonly cache = new Map<string, { target: string; until: number; sessionId: string }>();
  private readonly routeOfSession = new Map<string, string>();
  private readonly misses: RouteMisses;

  constructor(
    @Inject(SESSION_STORE) private readonly store: SessionQueries,
    gone: GoneSessions,
    @Inject(CONFIG) config: Pick<Config, 'EDGE_UNKNOWN_ROUTE_CACHE_SECONDS' | 'EDGE_MISSES_PER_MINUTE'>,
  ) {
    // A missed announcement is covered by the TTL.
    gone.onEvery((sessionId) => this.forget(sessionId));
    this.misses = new RouteMisses(config.EDGE_UNKNOWN_ROUTE_CACHE_SECONDS * 1000, config.EDGE_MISSES_PER_MINUTE);
  }

  /**
   * `routeId`: the id in the preview's origin (`<routeId>.<preview domain>`), the session's own or its pooled machine's.
   * `clientAddress`: the request's remote address, whose budget of misses a lookup spends.
   */
  async resolve(routeId: string, clientAddress?: string): Promise<Route> {
    const target = this.cached(routeId);
    if (target) return { kind: 'route', target };
    const now = Date.now();
    this.drop(routeId);
    const missed = this.misses.cachedMiss(routeId, now);
    if (missed) return missed === 'gone' ? GONE : UNKNOWN;
    const client = clientKeyOf(clientAddress);
    const refusedFor = this.misses.refusedFor(client, now);
    if (refusedFor > 0) return { kind: 'limited', retryAfterSeconds: refusedFor };
    const session = await this.store.getSessionByRoute(routeId);
    if (!session) {
      this.misses.record(routeId, 'unknown', client, Date.now());
      return UNKNOWN;
    }
    if (!isSessionLive(session.status)) {
      this.misses.record(routeId, 'gone', client, Date.now());
      return GONE;
    }
    if (!session.containerUrl) return UNKNOWN;
    if (session.status === 'active') {
      this.cache.set(routeId, { target: session.containerUrl, until: Date.now() + ACTIVE_ROUTE_TTL_MS, sessionId: session.id });
      this.routeOfSession.set(session.id, routeId);
    }
    return { kind: 'route', target: session.containerUrl };
  }

  /**
   * The machine address of a route held in memory and not yet due for a new look-up, else undefined. Synchronous:
   * nearly every preview request is answered from here, and the edge then proxies it without waiting on a promise.
   */
  cached(routeId: string): string | undefined {
    const entry = this.cache.get(routeId);
    return entry && entry.until > Date.now() ? entry.target : undefined;
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
