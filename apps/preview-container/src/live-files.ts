import { EventEmitter } from 'node:events';
import { lstat, realpath, unlink } from 'node:fs/promises';
import { dirname, sep } from 'node:path';
import { errorMessage, endedEventSchema, fileChangeSchema, fileEtag, resyncEventSchema, type FileChange, type WrittenFileNotice } from '@velocity/contracts';
import { EventStream, StreamClosed, type Logger, type SseFrame } from '@velocity/runtime';
import { writeProjectFiles, type ProjectFile } from './files';
import type { HealthState } from './health';
import { resolveInside, safeRelativePath } from './path-safety';

/**
 * Live files: follows the project's file changes from the api
 * (`GET /v1/machines/:sessionId/file-changes`, Server-Sent Events, the machine
 * token) and applies each to WORK_DIR with the same path checks as the first
 * load; Vite's watcher turns the writes into HMR updates.
 *
 * - `resync` (on the first connection, and when the api trimmed changes this
 *   machine had not seen): loads the whole file list and writes what differs,
 *   removing files the project no longer has.
 * - `put` / `delete` / `batch`: a notice of one change (paths, and each written
 *   file's ETag; no content). The written files this machine does not already
 *   have are read from the api in one request (`loadFiles`) and applied; its id
 *   is kept and sent back as Last-Event-ID when reconnecting, so nothing is
 *   missed or applied twice.
 * - `ended`, or 410 on connect: the session is over; health reports `session`
 *   failing and the stream is not reopened.
 * - Any other end (network error, api restart, 5xx, no heartbeat for
 *   `idleTimeoutMs`) reconnects with exponential backoff and jitter.
 */
export interface LiveFilesOptions {
  /** The file-changes URL. */
  url: string;
  token: string;
  workDir: string;
  /** Loads the project's whole file list (GET FILES_URL). */
  loadSnapshot: () => Promise<ProjectFile[]>;
  /** Loads the files at these paths as they are now, leaving out those the project no longer has (POST FILES_URL). */
  loadFiles: (paths: string[]) => Promise<ProjectFile[]>;
  health: HealthState;
  logger: Logger;
  /** First reconnect delay and the most it grows to, ms. */
  backoff?: { initialMs: number; maxMs: number };
  /** With no byte (change or heartbeat) for this long, the connection counts as dead. */
  idleTimeoutMs?: number;
  /** Runs the writes of a change of several files so the page gets them as one hot update (hmr-batch.ts); by default, as they are. */
  asOneUpdate?: (paths: string[], write: () => Promise<void>) => Promise<void>;
}

/** Environment of live files: FILE_CHANGES_URL, by default FILES_URL's `/files` replaced by `/file-changes`; null when neither gives one. */
export function fileChangesUrlOf(env: NodeJS.ProcessEnv, filesUrl: string): string | null {
  if (env.FILE_CHANGES_URL) return env.FILE_CHANGES_URL;
  // On the string, not through URL: `http://unix:<socket>:<path>` would come back without the colon after `unix`.
  const files = /\/files\/?(\?.*)?$/;
  return files.test(filesUrl) ? filesUrl.replace(files, '/file-changes$1') : null;
}

/** The session is over (`ended`, 410, or the token refused): the stream is not opened again. */
class SessionOver extends Error {}

export class LiveFiles extends EventEmitter {
  /** Project path → ETag (hex SHA-256) of the bytes on disk, for the files this machine wrote. */
  private readonly known = new Map<string, string>();
  private readonly stream: EventStream;
  private readonly stopController = new AbortController();
  private running: Promise<void> | undefined;
  /** Whether the stream is open now. */
  connected = false;

  constructor(private readonly options: LiveFilesOptions) {
    super();
    const { initialMs, maxMs } = options.backoff ?? { initialMs: 250, maxMs: 10_000 };
    this.stream = new EventStream({
      url: options.url,
      headers: { authorization: `Bearer ${options.token}` },
      signal: this.stopController.signal,
      idleTimeoutMs: options.idleTimeoutMs ?? 45_000,
      reconnect: { initialDelayMs: initialMs, maxDelayMs: maxMs },
      refused: ({ status }) =>
        status === 410
          ? new SessionOver('the api answered 410 Gone')
          : // The token is no longer valid: it expires an hour after the session does.
            status === 401 || status === 403
            ? new SessionOver(`the api refused the machine token (${status})`)
            : undefined,
      onOpen: () => {
        this.connected = true;
        this.emit('connected');
      },
      onReconnect: ({ error, delayMs }) => {
        this.connected = false;
        if (!(error instanceof StreamClosed)) this.options.logger.warn('file changes stream failed', { err: error as Error, retryInMs: delayMs });
        this.emit('reconnecting', delayMs);
      },
    });
  }

  /**
   * Records the files written at start, so a resync writes only what changed.
   * With the cursor they are current to, the stream starts after it instead of
   * with a resync (a change seen twice is skipped: its ETag is known).
   */
  seed(files: ProjectFile[], cursor?: string): void {
    for (const file of files) this.known.set(safeRelativePath(file.path), fileEtag(file));
    if (cursor) this.stream.lastEventId = cursor;
  }

  start(): void {
    this.running ??= this.follow();
  }

  async stop(): Promise<void> {
    this.stopController.abort(new Error('stopped'));
    await this.running?.catch(() => undefined);
  }

  private async follow(): Promise<void> {
    let ended: string | undefined;
    try {
      await this.stream.follow(async (frame) => {
        if (frame.event === 'ended') {
          const parsed = endedEventSchema.safeParse(safeJson(frame.data));
          ended = parsed.success ? parsed.data.reason : 'ended';
          return true;
        }
        await this.handle(frame);
      });
    } catch (error) {
      if (!(error instanceof SessionOver)) return; // stopped
      ended = error.message;
    } finally {
      this.connected = false;
    }
    this.options.health.sessionEnded = true;
    this.options.logger.info('session ended; live files stop', { reason: ended });
    this.emit('ended', ended);
  }

  /** `resync`: loads the whole file list; a change: applies it. Either way, where a reconnection resumes is after it. */
  private async handle(frame: SseFrame): Promise<void> {
    if (frame.event === 'resync') {
      const { cursor } = resyncEventSchema.parse(JSON.parse(frame.data));
      await this.resync();
      this.stream.lastEventId = cursor;
      return;
    }
    await this.apply(fileChangeSchema.parse(JSON.parse(frame.data)));
  }

  /** Loads the whole file list; writes what differs from what this machine wrote, removes what the project no longer has. */
  private async resync(): Promise<void> {
    const started = Date.now();
    const files = await this.options.loadSnapshot();
    const wanted = new Map(files.map((file) => [safeRelativePath(file.path), { ...file, hash: fileEtag(file) }]));
    const writes = [...wanted].filter(([path, file]) => this.known.get(path) !== file.hash);
    const removals = [...this.known.keys()].filter((path) => !wanted.has(path));
    await this.guard(async () => {
      if (writes.length > 0) await writeProjectFiles(this.options.workDir, writes.map(([path, { content, encoding }]) => ({ path, content, encoding })));
      for (const [path, file] of writes) this.known.set(path, file.hash);
      for (const path of removals) await this.remove(path);
    });
    this.options.logger.info('files resynced', { files: files.length, written: writes.length, removed: removals.length, ms: Date.now() - started });
    this.emit('resynced', { written: writes.map(([path]) => path), removed: removals });
  }

  /**
   * Reads the written files this machine does not have yet (one request for the
   * whole change), then writes them and removes the deleted paths; a batch is
   * written whole before Vite is told of any of it.
   */
  private async apply(change: FileChange): Promise<void> {
    const notices = change.type === 'put' ? [change] : change.type === 'batch' ? change.write : [];
    const removals = change.type === 'delete' ? [change.path] : change.type === 'batch' ? change.delete : [];
    await this.guard(async () => {
      // A path that is not safe fails here, inside the guard, before anything is read: reported on health, then a resync.
      const removed = removals.map(safeRelativePath);
      const wanted = notices.map((file) => ({ ...file, path: safeRelativePath(file.path) })).filter((file) => this.known.get(file.path) !== file.etag);
      const { changed, gone } = await this.current(wanted);
      const write = async () => {
        if (changed.length > 0) await writeProjectFiles(this.options.workDir, changed);
        for (const file of changed) this.known.set(file.path, fileEtag(file));
        for (const path of [...gone, ...removed]) await this.remove(path);
      };
      const paths = [...changed.map((file) => file.path), ...gone, ...removed];
      const together = change.type === 'batch' && paths.length > 1 ? this.options.asOneUpdate : undefined;
      await (together ? together(paths, write) : write());
    });
    this.options.logger.info('file change applied', change.type === 'batch' ? { type: change.type, written: notices.length, removed: removals.length } : { type: change.type, path: change.path });
    this.emit('applied', change);
  }

  /**
   * The noticed files as the api has them now: those whose bytes differ from what
   * is on disk, and the paths on disk that the project no longer has.
   */
  private async current(wanted: WrittenFileNotice[]): Promise<{ changed: ProjectFile[]; gone: string[] }> {
    if (wanted.length === 0) return { changed: [], gone: [] };
    const fetched = new Map((await this.options.loadFiles(wanted.map((file) => file.path))).map((file) => [safeRelativePath(file.path), file]));
    const changed: ProjectFile[] = [];
    const gone: string[] = [];
    for (const notice of wanted) {
      const file = fetched.get(notice.path);
      // A later write or delete raced this notice (the ETag read differs, or the file is gone): what was read is applied,
      // being newer; that change's own notice follows (then skipped: its ETag is known by then).
      if (!file) {
        if (this.known.has(notice.path)) gone.push(notice.path);
        continue;
      }
      const etag = fileEtag(file);
      if (etag !== notice.etag) this.options.logger.debug('file changed again since its notice; applying what was read', { path: notice.path });
      if (this.known.get(notice.path) !== etag) changed.push({ ...file, path: notice.path });
    }
    return { changed, gone };
  }

  /** Reports a write that failed on health (`data` failing) and reconnects from scratch, so the next connection resyncs. */
  private async guard(write: () => Promise<void>): Promise<void> {
    try {
      await write();
      this.options.health.dataError = undefined;
    } catch (error) {
      this.options.health.dataError = errorMessage(error);
      this.stream.lastEventId = undefined;
      throw error;
    }
  }

  /** Removes one project file from WORK_DIR, never following a link out of it. */
  private async remove(path: string): Promise<void> {
    const root = await realpath(this.options.workDir);
    const target = resolveInside(root, safeRelativePath(path));
    this.known.delete(path);
    const realDir = await realpath(dirname(target)).catch(() => null);
    if (realDir === null) return;
    if (realDir !== root && !realDir.startsWith(root + sep)) return;
    const existing = await lstat(target).catch(() => null);
    if (existing && !existing.isDirectory()) await unlink(target);
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
