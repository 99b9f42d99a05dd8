import type { Request, Response } from 'express';
import { TERMINAL_EVENTS, type SessionEvent } from '@velocity/contracts';
import { type EventLog, type StoredEvent, type StreamWatcher } from '@velocity/ops';
import { type Logger } from '@velocity/runtime';
import { type PreviewSession, type SessionRecords } from '@velocity/session-store';
import { startEventStream } from '../common/event-stream';

export interface EventStreamOptions {
  heartbeatMs: number;
  /** Reconnect delay hint sent to EventSource clients. */
  retryMs: number;
  /** How often, at most, an idle stream reads the session's row to learn that it ended without a stored event (a lost one). */
  rowCheckEveryMs?: number;
}

/** By default the row is read at most once a minute per idle stream; an announced end is checked at once. */
const ROW_CHECK_EVERY_MS = 60_000;

/**
 * Server-Sent Events for one client of one session, for as long as the session
 * lives. Replays the stored stream after `Last-Event-ID`, then waits for more:
 * progress, `ready`, then `diagnostics` whenever the build state changes; it
 * closes after a terminal event (`failed`, `ended`). A comment every heartbeat
 * keeps proxies from closing the connection. When the session is announced gone
 * (GoneSessions) or, at most every `rowCheckEveryMs` while idle, its row is read:
 * a row that says ended or error without its event in the stream ends the
 * stream with that event rebuilt from the row. When the stored stream has
 * expired, the row answers (`ready` once, then the stream waits for more).
 */
export class SessionEventStream {
  private closed = false;
  /** Ends the wait in progress when the client goes. */
  private readonly abort = new AbortController();
  private res: Response | undefined;

  constructor(
    private readonly sessionId: string,
    private readonly deps: {
      events: EventLog;
      store: SessionRecords;
      watcher: StreamWatcher;
      /** The process's logger: the rare line a stream writes names its session itself (no child logger per stream). */
      logger: Logger;
      /** Aborts when the session is announced gone (GoneSessions.watch): its row is read at once. */
      gone?: AbortSignal;
    },
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
    // Read before the headers go: a Redis that does not answer fails the request (503), not a stream already begun.
    const stored = start.first ? undefined : await this.deps.events.read(this.sessionId, lastEventId);
    startEventStream(res, this.options.retryMs, start.status, start.headers);
    this.res = res;
    req.on('close', () => this.close());
    try {
      if (start.first) res.write(frame(start.first));
      await this.run(res, start.first?.id ?? lastEventId, start.first !== undefined, stored);
    } catch (err) {
      if (!this.closed) this.deps.logger.warn('event stream broke', { sessionId: this.sessionId, err: err as Error });
    } finally {
      this.close();
      res.end();
    }
  }

  /**
   * `streamExists`: the stream is known to be there (its first event was just stored), so the first read may wait.
   * `stored`: what a first read already found after `lastEventId`.
   */
  private async run(res: Response, lastEventId: string, streamExists = false, stored?: StoredEvent[]): Promise<void> {
    const { events, gone } = this.deps;
    let cursor = lastEventId;
    // Otherwise the first read does not block, so a session whose stream is gone is answered at once.
    let waitMs = streamExists ? this.options.heartbeatMs : undefined;
    // Until the session is announced gone, that announcement ends a wait too; after it, only the client's leaving does.
    let signal = gone ? AbortSignal.any([this.abort.signal, gone]) : this.abort.signal;
    let rowCheckedAt = Date.now();
    let readyFromRowSent = false;
    let firstBatch = stored;
    while (!this.closed) {
      const batch =
        firstBatch ?? (waitMs === undefined ? await events.read(this.sessionId, cursor) : await events.wait(this.deps.watcher, this.sessionId, cursor, waitMs, signal));
      firstBatch = undefined;
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
      const announced = gone?.aborted === true && signal !== this.abort.signal;
      if (announced) signal = this.abort.signal;
      const rowDue = announced || Date.now() - rowCheckedAt >= (this.options.rowCheckEveryMs ?? ROW_CHECK_EVERY_MS);
      // Caught up on connecting: the row answers only for a stream that is gone (as it did before any wait).
      if (waitMs === undefined || rowDue) {
        if (rowDue) rowCheckedAt = Date.now();
        const fromRow = await this.eventFromRow(cursor, readyFromRowSent, !rowDue);
        if (this.closed) return;
        if (fromRow === 'stored') {
          waitMs ??= this.options.heartbeatMs;
          continue;
        }
        if (fromRow) {
          res.write(frame(fromRow));
          if (TERMINAL_EVENTS.includes(fromRow.event.type)) return;
          readyFromRowSent = true;
        }
      }
      if (waitMs !== undefined && !announced) res.write(': heartbeat\n\n');
      waitMs = this.options.heartbeatMs;
    }
  }

  /**
   * An event rebuilt from the row when the stored stream does not say it: the
   * session's end (ended, error) when the stream lacks it, or, when the whole
   * stored stream is gone, its `ready` (once). `stored` when events came after
   * `cursor` meanwhile: they say it (the real end's reason), and are read first.
   */
  private async eventFromRow(cursor: string, readySent: boolean, onlyIfStreamGone: boolean): Promise<StoredEvent | 'stored' | null> {
    if (onlyIfStreamGone && (await this.deps.events.exists(this.sessionId))) return null;
    const session = await this.deps.store.getSession(this.sessionId);
    if (!session) return null;
    const event = terminalEventOf(session);
    if (event) return (await this.deps.events.read(this.sessionId, cursor)).length > 0 ? 'stored' : { id: idAfter(cursor, event.at), event };
    if (readySent || session.status !== 'active' || !session.previewUrl || !session.expiresAt) return null;
    if (await this.deps.events.exists(this.sessionId)) return null;
    const ready: SessionEvent = { sessionId: session.id, at: Date.parse(session.updatedAt), type: 'ready', previewUrl: session.previewUrl, expiresAt: session.expiresAt };
    return { id: idAfter(cursor, ready.at), event: ready };
  }

  /** Ends the stream from the server's side (the api is shutting down); the client resumes elsewhere with Last-Event-ID. */
  shutdown(): void {
    this.close();
    this.res?.end();
    this.res?.socket?.destroy();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
  }
}

/** The terminal event a row says, for a session that has ended or failed. */
function terminalEventOf(session: PreviewSession): SessionEvent | null {
  const base = { sessionId: session.id, at: Date.parse(session.updatedAt) };
  if (session.status === 'error') return { ...base, type: 'failed', reason: session.errorMessage ?? 'unknown error', retryable: false };
  if (session.status === 'ended') return { ...base, type: 'ended', reason: 'ended' };
  return null;
}

/** The id a rebuilt event is sent with: the client's cursor (a resume after it reads the same), or one from its time. */
function idAfter(cursor: string, at: number): string {
  return cursor === '0' ? `${at}-0` : cursor;
}

/** One event as an SSE frame, its stream id as the event id. */
function frame({ id, event }: StoredEvent): string {
  return `id: ${id}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
}
