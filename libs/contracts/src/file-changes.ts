import type Redis from 'ioredis';
import { z } from 'zod';
import { MAX_PATH_LENGTH } from './file-paths';

/**
 * Live file changes: every write to a project's files, after it committed, is
 * appended to one Redis stream per project (trimmed, expiring). The api serves
 * it to the project's running preview machines over Server-Sent Events
 * (`GET /v1/machines/:sessionId/file-changes`); machines hold no Redis or
 * database credentials.
 *
 * The stream is a notification log, not the source of truth: its entries are
 * notices (paths, and a written file's ETag and size), never contents, so one
 * user's large writes cost Redis a few bytes each; a machine reads the files a
 * notice names from the api (`POST /v1/machines/:sessionId/files`). A reader
 * whose cursor fell behind what was trimmed is told to `resync` (fetch the
 * whole file list again), and so is a reader that starts without a cursor.
 */
const base = { projectId: z.string().uuid(), at: z.number().int() };

/** A file as written: where, its ETag (the hex SHA-256 of its bytes, as `fileEtag` and the store compute it) and its size in bytes. */
const writtenFileShape = {
  path: z.string().min(1),
  etag: z.string().regex(/^[0-9a-f]{64}$/, 'must be the hex SHA-256 of the file'),
  bytes: z.number().int().nonnegative(),
};
export const writtenFileNoticeSchema = z.object(writtenFileShape);
export type WrittenFileNotice = z.infer<typeof writtenFileNoticeSchema>;

/**
 * Notices of committed changes, without contents: a `put` names one written
 * file, a `delete` one removed path, a `batch` every file of one all-or-nothing
 * change, which a machine applies at once (all written, then reported).
 */
export const fileChangeSchema = z.discriminatedUnion('type', [
  z.object({ ...base, type: z.literal('put'), ...writtenFileShape }),
  z.object({ ...base, type: z.literal('delete'), path: z.string().min(1) }),
  z.object({ ...base, type: z.literal('batch'), write: z.array(writtenFileNoticeSchema), delete: z.array(z.string().min(1)) }),
]);
export type FileChange = z.infer<typeof fileChangeSchema>;

/** As many paths as one change may write (a PATCH takes at most 1000 files). */
export const MAX_PATHS_PER_READ = 1000;

/** The body of `POST /v1/machines/:sessionId/files`: the files a notice names, read in one request. */
export const machineFilesReadSchema = z
  .object({
    paths: z
      .array(z.string().min(1).max(MAX_PATH_LENGTH, `must be at most ${MAX_PATH_LENGTH} characters`))
      .min(1, 'name at least one path')
      .max(MAX_PATHS_PER_READ, `at most ${MAX_PATHS_PER_READ} paths in one read`)
      .describe('Project paths; those the project has no file at are left out of the answer'),
  })
  .strict();

export interface StoredFileChange {
  /** Redis stream id; sent as the SSE `id:` so machines resume with Last-Event-ID. */
  id: string;
  change: FileChange;
}

/**
 * The SSE events of the file-changes stream, by name:
 * - `resync` `{ cursor }`: load the whole file list now; changes after `cursor` follow.
 * - `put` / `delete` / `batch`: a FileChange (a notice: the machine reads the written files from the api), with the stream id as the event id.
 * - `ended` `{ reason }`: the session is over; the stream closes and must not be reopened.
 */
export const FILE_CHANGE_EVENTS = { Resync: 'resync', Ended: 'ended' } as const;
export const resyncEventSchema = z.object({ cursor: z.string().regex(/^\d+-\d+$/) });
export const endedEventSchema = z.object({ reason: z.string() });

/** Stream ids compare as (ms, seq) pairs; an id without `-seq` has seq 0. Runs for every reader on every wake-up: no BigInt. */
export function compareStreamIds(a: string, b: string): number {
  const dashA = a.indexOf('-');
  const dashB = b.indexOf('-');
  const ms = compareDecimals(dashA < 0 ? a : a.slice(0, dashA), dashB < 0 ? b : b.slice(0, dashB));
  if (ms !== 0) return ms;
  return compareDecimals(dashA < 0 ? '0' : a.slice(dashA + 1), dashB < 0 ? '0' : b.slice(dashB + 1));
}

/** Two non-negative integers written in decimal digits, of any length. */
function compareDecimals(x: string, y: string): number {
  const p = withoutLeadingZeros(x);
  const q = withoutLeadingZeros(y);
  if (p.length !== q.length) return p.length < q.length ? -1 : 1;
  return p < q ? -1 : p > q ? 1 : 0;
}

function withoutLeadingZeros(digits: string): string {
  let i = 0;
  while (i < digits.length - 1 && digits[i] === '0') i++;
  return i === 0 ? digits : digits.slice(i);
}

/** The stream id before which nothing was ever stored: the cursor of an empty stream. */
export const STREAM_START = '0-0';

export class FileChangeLog {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly ttlSeconds: number,
    /** Approximate number of changes kept per project; readers further behind resync. */
    private readonly maxLength = 200,
  ) {}

  key(projectId: string): string {
    return `${this.prefix}:files:${projectId}`;
  }

  async append(change: FileChange): Promise<string> {
    const valid = fileChangeSchema.parse(change);
    const key = this.key(valid.projectId);
    const result = await this.redis
      .multi()
      .xadd(key, 'MAXLEN', '~', String(this.maxLength), '*', 'c', JSON.stringify(valid))
      .expire(key, this.ttlSeconds)
      .exec();
    const [err, id] = result?.[0] ?? [new Error('no reply to XADD')];
    if (err) throw err;
    return id as string;
  }

  /** Changes after `afterId`, at once. */
  async read(projectId: string, afterId = STREAM_START): Promise<StoredFileChange[]> {
    const reply = await this.redis.xread('COUNT', 100, 'STREAMS', this.key(projectId), afterId);
    return reply ? reply[0][1].map(parseFileChangeEntry) : [];
  }

  /** Where the stream is now: the id of its last change ever appended, or STREAM_START. */
  async cursor(projectId: string): Promise<string> {
    const info = await this.info(projectId);
    return info?.lastGeneratedId ?? STREAM_START;
  }

  /**
   * Whether a reader at `cursor` may have missed changes: some change after it
   * was trimmed away. Trimming removes the oldest entries, so a cursor at or
   * after the first entry kept missed nothing; one before it may have (it is
   * answered true even when the entry it names was the last one trimmed). A
   * stream that expired as a whole had been idle for its whole TTL, far longer
   * than any session, so it counts as no gap.
   */
  async missedSince(projectId: string, cursor: string): Promise<boolean> {
    const info = await this.info(projectId);
    if (!info) return false;
    if (info.entriesAdded !== null && info.entriesAdded === info.length) return false;
    if (info.firstEntryId === null) return compareStreamIds(info.lastGeneratedId, cursor) > 0;
    return compareStreamIds(cursor, info.firstEntryId) < 0;
  }

  private info(projectId: string): Promise<StreamInfo | null> {
    return streamInfo(this.redis, this.key(projectId));
  }
}

export interface StreamInfo {
  /** Id of the last entry ever appended. */
  lastGeneratedId: string;
  /** Id of the oldest entry kept, null when the stream is empty. */
  firstEntryId: string | null;
  /** Entries kept now. */
  length: number;
  /** Entries ever appended (Redis 7+; null before). */
  entriesAdded: number | null;
}

/** XINFO STREAM of any stream key; null when the key does not exist. */
export async function streamInfo(redis: Redis, key: string): Promise<StreamInfo | null> {
  let reply: unknown[];
  try {
    reply = (await redis.call('XINFO', 'STREAM', key)) as unknown[];
  } catch (err) {
    if (/no such key/i.test((err as Error).message)) return null;
    throw err;
  }
  const fields = new Map<string, unknown>();
  for (let i = 0; i + 1 < reply.length; i += 2) fields.set(String(reply[i]), reply[i + 1]);
  const first = fields.get('first-entry') as [string, string[]] | null | undefined;
  const added = fields.get('entries-added');
  return {
    lastGeneratedId: String(fields.get('last-generated-id') ?? STREAM_START),
    firstEntryId: first ? String(first[0]) : null,
    length: Number(fields.get('length') ?? 0),
    entriesAdded: added === undefined || added === null ? null : Number(added),
  };
}

/** One `[id, [field, value]]` stream entry as a stored change. */
export function parseFileChangeEntry([id, fields]: [string, string[]]): StoredFileChange {
  return { id, change: fileChangeSchema.parse(JSON.parse(fields[1])) };
}
