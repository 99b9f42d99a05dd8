import type { Request, Response } from 'express';
import { FILE_CHANGE_EVENTS, isSessionLive, parseFileChangeEntry, type FileChange, type FileChangeLog } from '@velocity/contracts';
import { type Logger } from '@velocity/runtime';
import { type SessionRecords } from '@velocity/session-store';
import { type StreamWatcher } from '@velocity/ops';
import { startEventStream } from '../common/event-stream';

export interface FileChangeStreamOptions {
  heartbeatMs: number;
  /** Reconnect delay hint sent to clients. */
  retryMs: number;
}

/**
 * Server-Sent Events of one project's file changes, for one preview machine.
 *
 * - No Last-Event-ID: `resync` with the stream's cursor first (the machine loads
 *   the whole file list, then applies what follows), then every change.
 * - Last-Event-ID: the changes after it; `resync` instead when some of them were
 *   trimmed away.
 * - `put` / `delete` frames carry the change, with the stream id as event id.
 * - `ended` when the session is over (announced gone: `ending`, `ended` or
 *   `failed`; or, should that announcement be lost, its row, checked each
 *   heartbeat, says so); then the stream closes.
 * - A comment every heartbeat keeps proxies from closing an idle connection.
 */
export class FileChangeStream {
  private closed = false;
  /** Ends the wait in progress when the machine goes. */
  private readonly abort = new AbortController();
  private res: Response | undefined;

  constructor(
    private readonly session: { id: string; projectId: string },
    private readonly deps: {
      changes: FileChangeLog;
      store: SessionRecords;
      watcher: StreamWatcher;
      /** Aborts when the session is announced gone (GoneSessions.watch). */
      gone: AbortSignal;
      logger: Logger;
    },
    private readonly options: FileChangeStreamOptions,
  ) {}

  async pipe(req: Request, res: Response, lastEventId: string | undefined): Promise<void> {
    startEventStream(res, this.options.retryMs);
    this.res = res;
    req.on('close', () => this.close());
    try {
      await this.run(res, lastEventId);
    } catch (err) {
      if (!this.closed) this.deps.logger.warn('file change stream broke', { err: err as Error });
    } finally {
      this.close();
      res.end();
    }
  }

  private async run(res: Response, lastEventId: string | undefined): Promise<void> {
    const { changes, gone } = this.deps;
    const { projectId } = this.session;
    let cursor: string;
    if (lastEventId === undefined || (await changes.missedSince(projectId, lastEventId))) {
      cursor = await changes.cursor(projectId);
      await this.send(res, `id: ${cursor}\nevent: ${FILE_CHANGE_EVENTS.Resync}\ndata: ${JSON.stringify({ cursor })}\n\n`);
    } else {
      cursor = lastEventId;
    }
    const filesKey = changes.key(projectId);
    const waitSignal = AbortSignal.any([this.abort.signal, gone]);
    while (!this.closed) {
      if (gone.aborted) return this.ended(res, 'session ended');
      const reply = await this.deps.watcher.read([[filesKey, cursor]], this.options.heartbeatMs, waitSignal);
      if (this.closed) return;
      if (gone.aborted) return this.ended(res, 'session ended');
      if (!reply) {
        const over = await this.sessionOver();
        if (over) return this.ended(res, `session ${over} (its row)`);
        await this.send(res, ': heartbeat\n\n');
        continue;
      }
      for (const entry of reply[0][1]) {
        const id = entry[0];
        const change = readableChange(entry);
        // An entry this api cannot read (one an older version wrote, with contents) still says files changed: resync.
        const frame = change ? `event: ${change.type}\ndata: ${JSON.stringify(change)}` : `event: ${FILE_CHANGE_EVENTS.Resync}\ndata: ${JSON.stringify({ cursor: id })}`;
        await this.send(res, `id: ${id}\n${frame}\n\n`);
        cursor = id;
      }
    }
  }

  /** The status of a session that is over (`missing` when its row is gone), or null. */
  private async sessionOver(): Promise<string | null> {
    const session = await this.deps.store.getSession(this.session.id);
    if (!session) return 'missing';
    return isSessionLive(session.status) ? null : session.status;
  }

  private async ended(res: Response, reason: string): Promise<void> {
    await this.send(res, `event: ${FILE_CHANGE_EVENTS.Ended}\ndata: ${JSON.stringify({ reason })}\n\n`);
  }

  /** Writes a frame, waiting for the socket to drain when its buffer is full (a batch notice may name a thousand files). */
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

/** The change an entry holds, or null when it is not one this version reads. */
function readableChange(entry: [string, string[]]): FileChange | null {
  try {
    return parseFileChangeEntry(entry).change;
  } catch {
    return null;
  }
}
