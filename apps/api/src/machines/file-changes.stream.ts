import type { Request, Response } from 'express';
import {
  FILE_CHANGE_EVENTS,
  parseFileChangeEntry,
  type EventLog,
  type FileChangeLog,
  type Logger,
  type SessionStore,
  type StreamWatcher,
} from '@velocity/shared';
import { startEventStream } from '../common/event-stream';

export interface FileChangeStreamOptions {
  heartbeatMs: number;
  /** Reconnect delay hint sent to clients. */
  retryMs: number;
}

/** Session events after which the machine has nothing more to follow. */
const SESSION_OVER = new Set(['ending', 'ended', 'failed']);
/** Statuses of a session whose machine has nothing more to follow. */
export const SESSION_GONE_STATUSES = ['ending', 'ended', 'error'] as const;

/**
 * Server-Sent Events of one project's file changes, for one preview machine.
 *
 * - No Last-Event-ID: `resync` with the stream's cursor first (the machine loads
 *   the whole file list, then applies what follows), then every change.
 * - Last-Event-ID: the changes after it; `resync` instead when some of them were
 *   trimmed away.
 * - `put` / `delete` frames carry the change, with the stream id as event id.
 * - `ended` when the session is over (its event stream says `ending`, `ended` or
 *   `failed`, or its row, checked each heartbeat, says so); then the stream closes.
 * - A comment every heartbeat keeps proxies from closing an idle connection.
 */
export class FileChangeStream {
  private closed = false;
  /** Ends the wait in progress when the machine goes. */
  private readonly abort = new AbortController();
  private res: Response | undefined;

  constructor(
    private readonly session: { id: string; projectId: string },
    private readonly deps: { changes: FileChangeLog; events: EventLog; store: SessionStore; watcher: StreamWatcher; logger: Logger },
    private readonly options: FileChangeStreamOptions,
  ) {}

  /** `eventsCursor`: where the session's event stream was before its row was checked, so no `ending` falls between. */
  async pipe(req: Request, res: Response, lastEventId: string | undefined, eventsCursor: string): Promise<void> {
    startEventStream(res, this.options.retryMs);
    this.res = res;
    req.on('close', () => this.close());
    try {
      await this.run(res, lastEventId, eventsCursor);
    } catch (err) {
      if (!this.closed) this.deps.logger.warn('file change stream broke', { err: err as Error });
    } finally {
      this.close();
      res.end();
    }
  }

  private async run(res: Response, lastEventId: string | undefined, eventsCursor: string): Promise<void> {
    const { changes, events } = this.deps;
    const { projectId } = this.session;
    let cursor: string;
    if (lastEventId === undefined || (await changes.missedSince(projectId, lastEventId))) {
      cursor = await changes.cursor(projectId);
      await this.send(res, `id: ${cursor}\nevent: ${FILE_CHANGE_EVENTS.Resync}\ndata: ${JSON.stringify({ cursor })}\n\n`);
    } else {
      cursor = lastEventId;
    }
    const filesKey = changes.key(projectId);
    const eventsKey = events.key(this.session.id);
    while (!this.closed) {
      const reply = await this.deps.watcher.read(
        [
          [filesKey, cursor],
          [eventsKey, eventsCursor],
        ],
        this.options.heartbeatMs,
        this.abort.signal,
      );
      if (this.closed) return;
      if (!reply) {
        if (await this.sessionOver()) return this.ended(res, 'session ended');
        await this.send(res, ': heartbeat\n\n');
        continue;
      }
      const files = reply.find(([key]) => key === filesKey)?.[1] ?? [];
      for (const entry of files) {
        const { id, change } = parseFileChangeEntry(entry);
        await this.send(res, `id: ${id}\nevent: ${change.type}\ndata: ${JSON.stringify(change)}\n\n`);
        cursor = id;
      }
      for (const [id, fields] of reply.find(([key]) => key === eventsKey)?.[1] ?? []) {
        eventsCursor = id;
        const type = eventType(fields);
        if (type && SESSION_OVER.has(type)) return this.ended(res, `session ${type}`);
      }
    }
  }

  private async sessionOver(): Promise<boolean> {
    const session = await this.deps.store.getSession(this.session.id);
    return !session || (SESSION_GONE_STATUSES as readonly string[]).includes(session.status);
  }

  private async ended(res: Response, reason: string): Promise<void> {
    await this.send(res, `event: ${FILE_CHANGE_EVENTS.Ended}\ndata: ${JSON.stringify({ reason })}\n\n`);
  }

  /** Writes a frame, waiting for the socket to drain when its buffer is full (a change may be a megabyte). */
  private async send(res: Response, frame: string): Promise<void> {
    if (this.closed) return;
    if (res.write(frame)) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        res.off('drain', done);
        res.off('close', done);
        resolve();
      };
      res.once('drain', done);
      res.once('close', done);
    });
  }

  /** Ends the stream from the server's side (the api is shutting down); the machine reconnects to another replica or to the restarted api. */
  shutdown(): void {
    this.close();
    // Not just the response: the connection too, or the machine's reconnect would find it kept alive
    // and hold the closing server open.
    this.res?.end();
    this.res?.socket?.destroy();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
  }
}

function eventType(fields: string[]): string | undefined {
  try {
    return (JSON.parse(fields[1]) as { type?: string }).type;
  } catch {
    return undefined;
  }
}
