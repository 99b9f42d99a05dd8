import { Inject, Injectable, OnModuleDestroy } from '@nestjs/common';
import type Redis from 'ioredis';
import { createRedis, type EventLog } from '@velocity/ops';
import { type Config } from '@velocity/contracts';
import { CONFIG, EVENT_LOG } from '../tokens';

/**
 * The sessions whose URL stops working (ending, ended, failed), as the event log
 * announces them on its channel: one subscription per api process, for every
 * part that must let go of such a session at once (the edge's routes, the
 * machines' file-change streams). Pub/sub delivers at most once: a message sent
 * while the subscriber reconnects is lost, so each listener has its own
 * fallback (a route's TTL, a stream's check of the row at each heartbeat).
 */
@Injectable()
export class GoneSessions implements OnModuleDestroy {
  private readonly subscriber: Redis;
  private readonly ofSession = new Map<string, Set<() => void>>();
  private readonly ofAll = new Set<(sessionId: string) => void>();

  constructor(@Inject(EVENT_LOG) events: EventLog, @Inject(CONFIG) config: Config) {
    this.subscriber = createRedis(config.REDIS_URL);
    this.subscriber.on('message', (_channel, sessionId: string) => this.announce(sessionId));
    // ioredis subscribes again by itself after a reconnect.
    void this.subscriber.subscribe(events.goneChannel).catch(() => undefined);
  }

  /** Calls `listener` with every session announced gone. */
  onEvery(listener: (sessionId: string) => void): void {
    this.ofAll.add(listener);
  }

  /** A signal that aborts when this session is announced gone; `release` when no longer needed. */
  watch(sessionId: string): { signal: AbortSignal; release(): void } {
    const controller = new AbortController();
    const listener = () => controller.abort(new Error(`session ${sessionId} is gone`));
    const listeners = this.ofSession.get(sessionId) ?? new Set();
    this.ofSession.set(sessionId, listeners.add(listener));
    return {
      signal: controller.signal,
      release: () => {
        listeners.delete(listener);
        if (listeners.size === 0 && this.ofSession.get(sessionId) === listeners) this.ofSession.delete(sessionId);
      },
    };
  }

  /** Sessions watched now (for tests). */
  get watched(): number {
    return this.ofSession.size;
  }

  private announce(sessionId: string): void {
    for (const listener of this.ofAll) listener(sessionId);
    for (const listener of this.ofSession.get(sessionId) ?? []) listener();
  }

  onModuleDestroy(): void {
    this.subscriber.disconnect();
  }
}
