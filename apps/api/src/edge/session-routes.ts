import type { SessionStore } from '@velocity/shared';

export type Route =
  | { kind: 'route'; target: string }
  | { kind: 'unknown' }
  /** The session ended or failed: its URL is gone for good. */
  | { kind: 'gone' };

/**
 * Session id → machine address, for the local edge. An active session's route
 * is looked up once and kept for `ttlMs`; a session still starting (only the
 * provisioner's verification reaches it then) is looked up each time.
 */
export class SessionRoutes {
  private readonly cache = new Map<string, { target: string; until: number }>();

  constructor(private readonly store: SessionStore, private readonly ttlMs = 5000) {}

  async resolve(sessionId: string): Promise<Route> {
    const cached = this.cache.get(sessionId);
    if (cached && cached.until > Date.now()) return { kind: 'route', target: cached.target };
    this.cache.delete(sessionId);
    const session = await this.store.getSession(sessionId);
    if (!session) return { kind: 'unknown' };
    if (['ending', 'ended', 'error'].includes(session.status)) return { kind: 'gone' };
    if (!session.containerUrl) return { kind: 'unknown' };
    if (session.status === 'active') this.cache.set(sessionId, { target: session.containerUrl, until: Date.now() + this.ttlMs });
    return { kind: 'route', target: session.containerUrl };
  }

  forget(sessionId: string): void {
    this.cache.delete(sessionId);
  }
}
