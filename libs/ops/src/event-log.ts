import type Redis from 'ioredis';
import { sessionEventSchema, type SessionEvent } from '@velocity/contracts';
import type { StreamEntries, StreamWatcher } from './stream-watcher';

const GONE_EVENTS: readonly SessionEvent['type'][] = ['ending', 'ended', 'failed'];

export interface StoredEvent {
  /** Redis stream id; sent as the SSE `id:` so clients resume with Last-Event-ID. */
  id: string;
  event: SessionEvent;
}

/**
 * The stored event stream of each session: one Redis stream per session,
 * trimmed and expiring. Appending is emitting; any api replica can replay it.
 */
export class EventLog {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly ttlSeconds: number,
    private readonly maxLength = 500,
  ) {}

  key(sessionId: string): string {
    return `${this.prefix}:events:${sessionId}`;
  }

  /** Pub/sub channel that names each session whose URL stops working (ending, ended, failed); routing caches listen. */
  get goneChannel(): string {
    return `${this.prefix}:sessions-gone`;
  }

  async append(event: SessionEvent): Promise<string> {
    const [id] = await this.appendAll([event]);
    return id;
  }

  /** Several events of one session in one round trip, in order; their ids. */
  async appendAll(events: readonly SessionEvent[]): Promise<string[]> {
    const valid = events.map((event) => sessionEventSchema.parse(event));
    const key = this.key(valid[0].sessionId);
    if (valid.some((event) => event.sessionId !== valid[0].sessionId)) throw new Error('appendAll: events of more than one session');
    const batch = this.redis.multi();
    for (const event of valid) batch.xadd(key, 'MAXLEN', '~', String(this.maxLength), '*', 'e', JSON.stringify(event));
    batch.expire(key, this.ttlSeconds);
    const gone = valid.find((event) => GONE_EVENTS.includes(event.type));
    if (gone) batch.publish(this.goneChannel, gone.sessionId);
    const result = (await batch.exec()) ?? [];
    return valid.map((_, i) => {
      const [err, id] = result[i] ?? [new Error('no reply to XADD')];
      if (err) throw err;
      return id as string;
    });
  }

  /** Events after `afterId` ('0' for all), at once. */
  async read(sessionId: string, afterId = '0'): Promise<StoredEvent[]> {
    const reply = await this.redis.xread('COUNT', 100, 'STREAMS', this.key(sessionId), afterId);
    return reply ? toStoredEvents(reply[0][1]) : [];
  }

  /** Events after `afterId`, waiting for the next ones (through the process's shared watcher) up to `timeoutMs`. */
  async wait(watcher: StreamWatcher, sessionId: string, afterId: string, timeoutMs: number, signal?: AbortSignal): Promise<StoredEvent[]> {
    const reply = await watcher.read([[this.key(sessionId), afterId]], timeoutMs, signal);
    return reply ? toStoredEvents(reply[0][1]) : [];
  }

  async exists(sessionId: string): Promise<boolean> {
    return (await this.redis.exists(this.key(sessionId))) === 1;
  }
}

/**
 * Stream entries of the event log as events. Every entry was checked against
 * sessionEventSchema by appendAll, the only writer, and the schema changes
 * nothing it accepts: reading parses the JSON only (it runs for every follower
 * of every session, on every batch).
 */
function toStoredEvents(entries: StreamEntries): StoredEvent[] {
  return entries.map(([id, fields]) => ({ id, event: JSON.parse(fields[1]) as SessionEvent }));
}
