import type Redis from 'ioredis';
import { compareStreamIds } from '@velocity/contracts';

/** Entries of one Redis stream as XREAD gives them: `[id, [field, value, …]]`. */
export type StreamEntries = Array<[id: string, fields: string[]]>;
/** What a read returns: the streams that had entries after their cursor, as XREAD does. */
export type StreamsReply = Array<[key: string, entries: StreamEntries]>;

interface Waiter {
  /** Stream key → the id after which this reader wants entries. */
  cursors: Map<string, string>;
  finish(reply: StreamsReply | null): void;
  fail(err: Error): void;
}

export interface StreamWatcherOptions {
  /** Entries per stream and XREAD (a file change may be a megabyte). */
  count?: number;
  /** Longest single XREAD BLOCK; readers' own timeouts are kept by timers. */
  blockMs?: number;
}

/**
 * Blocking reads of many Redis streams over one connection. Every reader of the
 * process (an SSE client following a session, a machine following its files)
 * waits in the same XREAD BLOCK, which names each stream once, from the
 * earliest cursor any reader holds. A connection per reader would cost a
 * connect and a ready check each, and a Redis connection per open stream.
 *
 * A reader that needs a stream the pending XREAD does not cover interrupts it
 * (CLIENT UNBLOCK from the command connection), so the next XREAD includes it.
 */
export class StreamWatcher {
  private readonly waiters = new Set<Waiter>();
  /** The waiters of each stream: a reply wakes only those of the streams it names. */
  private readonly waitersOf = new Map<string, Set<Waiter>>();
  private readonly reader: Redis;
  /** CLIENT ID of the blocking connection (it changes with every reconnect). */
  private readerId: number | undefined;
  /** Streams and cursors of the XREAD in flight; null when none is. */
  private pending: Map<string, string> | null = null;
  private interrupting = false;
  private wake: (() => void) | undefined;
  private closed = false;
  private readonly running: Promise<void>;

  constructor(
    private readonly commands: Redis,
    private readonly options: StreamWatcherOptions = {},
  ) {
    // A command timeout (the api's connections have one) must outlast the longest BLOCK.
    const commandTimeout = commands.options.commandTimeout;
    this.reader = commands.duplicate(commandTimeout ? { commandTimeout: commandTimeout + (options.blockMs ?? DEFAULT_BLOCK_MS) } : {});
    this.reader.on('error', () => undefined);
    this.reader.on('close', () => (this.readerId = undefined));
    this.running = this.loop();
  }

  /**
   * Entries after each stream's cursor, as soon as any of the streams has some;
   * null when `timeoutMs` passes first, or when `signal` aborts the wait. Rejects
   * when the read fails on a connection that fails fast (the api's): a reader
   * then ends its stream instead of waiting on a Redis that is gone.
   */
  read(streams: ReadonlyArray<readonly [key: string, afterId: string]>, timeoutMs: number, signal?: AbortSignal): Promise<StreamsReply | null> {
    if (this.closed || signal?.aborted) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const onAbort = () => waiter.finish(null);
      const timer = setTimeout(onAbort, timeoutMs);
      const settle = (answer: () => void) => {
        if (!this.waiters.delete(waiter)) return;
        for (const key of waiter.cursors.keys()) this.forget(key, waiter);
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        answer();
      };
      const waiter: Waiter = {
        cursors: new Map(streams.map(([key, id]) => [key, id])),
        finish: (reply) => settle(() => resolve(reply)),
        fail: (err) => settle(() => reject(err)),
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.add(waiter);
      for (const key of waiter.cursors.keys()) {
        const of = this.waitersOf.get(key) ?? new Set<Waiter>();
        this.waitersOf.set(key, of.add(waiter));
      }
      this.wake?.();
      if (!this.covers(waiter)) void this.interrupt();
    });
  }

  /** Readers waiting now (for tests and metrics). */
  get waiting(): number {
    return this.waiters.size;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const waiter of [...this.waiters]) waiter.finish(null);
    this.wake?.();
    this.reader.disconnect();
    await this.running;
  }

  private async loop(): Promise<void> {
    while (!this.closed) {
      if (this.waiters.size === 0) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
        continue;
      }
      const cursors = this.cursors();
      const args = [...cursors.keys(), ...cursors.values()];
      this.pending = cursors;
      let reply: StreamsReply | null = null;
      try {
        this.readerId ??= Number(await this.reader.client('ID'));
        reply = (await this.reader.xread('COUNT', this.options.count ?? 20, 'BLOCK', this.options.blockMs ?? DEFAULT_BLOCK_MS, 'STREAMS', ...args)) as StreamsReply | null;
      } catch (err) {
        // Redis went away. A connection that waits for Redis keeps its readers waiting (their timeouts still run);
        // one that fails fast fails them, so no client is held by a Redis that may not come back.
        if (!this.closed && this.reader.options.enableOfflineQueue === false) for (const waiter of [...this.waiters]) waiter.fail(err as Error);
        if (!this.closed) await sleep(200);
      } finally {
        this.pending = null;
      }
      if (reply) this.deliver(reply);
      // Readers given entries ask again at once; the next XREAD waits for them instead of being interrupted by each.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  private forget(key: string, waiter: Waiter): void {
    const of = this.waitersOf.get(key);
    of?.delete(waiter);
    if (of?.size === 0) this.waitersOf.delete(key);
  }

  /** For each stream, the earliest cursor of the readers waiting on it. */
  private cursors(): Map<string, string> {
    const cursors = new Map<string, string>();
    for (const [key, waiters] of this.waitersOf) {
      let earliest: string | undefined;
      for (const waiter of waiters) {
        const id = waiter.cursors.get(key)!;
        if (earliest === undefined || compareStreamIds(id, earliest) < 0) earliest = id;
      }
      if (earliest !== undefined) cursors.set(key, earliest);
    }
    return cursors;
  }

  /** Whether the XREAD in flight already reads every stream of this reader from its cursor or earlier. */
  private covers(waiter: Waiter): boolean {
    const pending = this.pending;
    if (!pending) return true; // the next XREAD is built with it
    for (const [key, id] of waiter.cursors) {
      const from = pending.get(key);
      if (from === undefined || compareStreamIds(from, id) > 0) return false;
    }
    return true;
  }

  private deliver(reply: StreamsReply): void {
    const byKey = new Map(reply);
    const woken = new Set<Waiter>();
    for (const [key] of reply) for (const waiter of this.waitersOf.get(key) ?? []) woken.add(waiter);
    for (const waiter of woken) {
      const found: StreamsReply = [];
      for (const [key, after] of waiter.cursors) {
        const entries = byKey.get(key)?.filter(([id]) => compareStreamIds(id, after) > 0);
        if (entries?.length) found.push([key, entries]);
      }
      if (found.length > 0) waiter.finish(found);
    }
  }

  /**
   * Ends the XREAD in flight so the next one covers the readers it misses. The
   * unblock may reach Redis before that XREAD does (then it unblocks nothing):
   * it is sent again until it hits, or that XREAD has ended anyway.
   */
  private async interrupt(): Promise<void> {
    if (this.interrupting) return;
    this.interrupting = true;
    let failed = false;
    try {
      for (let attempt = 0; attempt < 100 && this.missesReaders(); attempt++) {
        if (this.readerId !== undefined && Number(await this.commands.client('UNBLOCK', this.readerId)) === 1) break;
        await sleep(5);
      }
    } catch {
      // The command connection is down too: the XREAD ends by its own BLOCK time.
      failed = true;
    } finally {
      this.interrupting = false;
    }
    // A reader may have come while the unblock was in flight, after the next XREAD was built.
    if (failed) await sleep(100);
    if (this.missesReaders()) void this.interrupt();
  }

  /** Whether an XREAD is in flight that leaves some waiting reader out. */
  private missesReaders(): boolean {
    if (this.closed || !this.pending) return false;
    for (const waiter of this.waiters) if (!this.covers(waiter)) return true;
    return false;
  }
}

const DEFAULT_BLOCK_MS = 15_000;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
