import { Inject, Injectable, OnModuleDestroy } from '@nestjs/common';
import type Redis from 'ioredis';
import { createRedis, type Config, type EventLog, type SessionStore } from '@velocity/shared';
import { CONFIG, EVENT_LOG, SESSION_STORE } from '../tokens';

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
export class SessionRoutes implements OnModuleDestroy {
  private readonly cache = new Map<string, { target: string; until: number }>();
  private readonly subscriber: Redis;

  constructor(
    @Inject(SESSION_STORE) private readonly store: SessionStore,
    @Inject(EVENT_LOG) events: EventLog,
    @Inject(CONFIG) config: Config,
  ) {
    this.subscriber = createRedis(config.REDIS_URL);
    this.subscriber.on('message', (_channel, sessionId: string) => this.forget(sessionId));
    // Resubscribes after a reconnect by itself (ioredis); a missed message is covered by the TTL.
    void this.subscriber.subscribe(events.goneChannel).catch(() => undefined);
  }

  async resolve(sessionId: string): Promise<Route> {
    const cached = this.cache.get(sessionId);
    if (cached && cached.until > Date.now()) return { kind: 'route', target: cached.target };
    this.cache.delete(sessionId);
    const session = await this.store.getSession(sessionId);
    if (!session) return { kind: 'unknown' };
    if (['ending', 'ended', 'error'].includes(session.status)) return { kind: 'gone' };
    if (!session.containerUrl) return { kind: 'unknown' };
    if (session.status === 'active') this.cache.set(sessionId, { target: session.containerUrl, until: Date.now() + ACTIVE_ROUTE_TTL_MS });
    return { kind: 'route', target: session.containerUrl };
  }

  forget(sessionId: string): void {
    this.cache.delete(sessionId);
  }

  /** Whether a route is held in memory (for tests and metrics). */
  isCached(sessionId: string): boolean {
    return this.cache.has(sessionId);
  }

  onModuleDestroy(): void {
    this.subscriber.disconnect();
  }
}
