import type { Request, Response } from 'express';
import {
  TERMINAL_EVENTS,
  type EventLog,
  type Logger,
  type SessionEvent,
  type SessionStore,
  type StoredEvent,
  type StreamWatcher,
} from '@velocity/shared';
import { startEventStream } from '../common/event-stream';

export interface EventStreamOptions {
  heartbeatMs: number;
  /** Reconnect delay hint sent to EventSource clients. */
  retryMs: number;
}

/**
 * Server-Sent Events for one client of one session. Replays the stored stream
 * after `Last-Event-ID`, then waits for more; a comment every heartbeat keeps
 * proxies from closing the connection; closes after a terminal event. When the
 * stored stream has expired, the row answers.
 */
export class SessionEventStream {
  private closed = false;
  /** Ends the wait in progress when the client goes. */
  private readonly abort = new AbortController();

  constructor(
    private readonly sessionId: string,
    private readonly deps: { events: EventLog; store: SessionStore; watcher: StreamWatcher; logger: Logger },
    private readonly options: EventStreamOptions,
  ) {}

  /**
   * `start`: the status and extra headers of the response (a stream that answers a POST is a 202 with `location`),
   * and `first`, the session's first event when the caller has just stored it (it is sent without being read back).
   */
  async pipe(
    req: Request,
    res: Response,
    lastEventId: string,
    start: { status?: number; headers?: Record<string, string>; first?: StoredEvent } = {},
  ): Promise<void> {
    startEventStream(res, this.options.retryMs, start.status, start.headers);
    req.on('close', () => this.close());
    try {
      if (start.first) res.write(frame(start.first));
      await this.run(res, start.first?.id ?? lastEventId, start.first !== undefined);
    } catch (err) {
      if (!this.closed) this.deps.logger.warn('event stream broke', { err: err as Error });
    } finally {
      this.close();
      res.end();
    }
  }

  /** `streamExists`: the stream is known to be there (its first event was just stored), so the first read may wait. */
  private async run(res: Response, lastEventId: string, streamExists = false): Promise<void> {
    let cursor = lastEventId;
    // Otherwise the first read does not block, so a session whose stream is gone is answered at once.
    let waitMs = streamExists ? this.options.heartbeatMs : undefined;
    while (!this.closed) {
      const { events } = this.deps;
      const batch =
        waitMs === undefined
          ? await events.read(this.sessionId, cursor)
          : await events.wait(this.deps.watcher, this.sessionId, cursor, waitMs, this.abort.signal);
      if (this.closed) return;
      // One write for the whole batch: each write is a send of its own.
      const end = batch.findIndex((stored) => TERMINAL_EVENTS.includes(stored.event.type));
      const sent = end < 0 ? batch : batch.slice(0, end + 1);
      if (sent.length > 0) res.write(sent.map(frame).join(''));
      if (end >= 0) return;
      if (batch.length > 0) {
        cursor = batch[batch.length - 1].id;
        continue;
      }
      const fromRow = await this.eventFromRow(cursor);
      if (fromRow) return void res.write(frame(fromRow));
      if (waitMs !== undefined) res.write(': heartbeat\n\n');
      waitMs = this.options.heartbeatMs;
    }
  }

  /** A terminal event rebuilt from the row, for a session whose stored stream is gone. */
  private async eventFromRow(cursor: string): Promise<StoredEvent | null> {
    if (await this.deps.events.exists(this.sessionId)) return null;
    const session = await this.deps.store.getSession(this.sessionId);
    if (!session) return null;
    const at = Date.parse(session.updatedAt);
    const base = { sessionId: session.id, at };
    let event: SessionEvent | null = null;
    if (session.status === 'active' && session.previewUrl && session.expiresAt) {
      event = { ...base, type: 'ready', previewUrl: session.previewUrl, expiresAt: session.expiresAt };
    } else if (session.status === 'error') {
      event = { ...base, type: 'failed', reason: session.errorMessage ?? 'unknown error', retryable: false };
    } else if (session.status === 'ended') {
      event = { ...base, type: 'ended', reason: 'ended' };
    }
    return event ? { id: cursor === '0' ? `${at}-0` : cursor, event } : null;
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
  }
}

/** One event as an SSE frame, its stream id as the event id. */
function frame({ id, event }: StoredEvent): string {
  return `id: ${id}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
}
