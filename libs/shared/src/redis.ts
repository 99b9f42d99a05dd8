import Redis, { type RedisOptions } from 'ioredis';

/**
 * A Redis connection for BullMQ and the event log. `maxRetriesPerRequest: null`
 * is what BullMQ workers need: commands wait for a reconnect instead of failing.
 */
export function createRedis(url: string, options: RedisOptions = {}): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true, ...options });
}

/**
 * Connections for blocking reads (XREAD BLOCK), kept for reuse. Each SSE client
 * holds one of its own while it waits; a new one would cost a connect and a
 * ready check per client. A reader given back in the middle of a read is closed
 * instead: it would stay blocked until its read times out.
 */
export class BlockingReaders {
  private readonly idle: Redis[] = [];

  constructor(
    private readonly source: Redis,
    /** Idle readers kept at most; more are closed when given back. */
    private readonly maxIdle = 64,
  ) {}

  acquire(): Redis {
    for (let reader = this.idle.pop(); reader; reader = this.idle.pop()) {
      if (reader.status === 'ready') return reader;
      reader.disconnect();
    }
    return this.source.duplicate();
  }

  /** `reading`: a read of its is still in flight. */
  release(reader: Redis, reading: boolean): void {
    if (reading || reader.status !== 'ready' || this.idle.length >= this.maxIdle) return void reader.disconnect();
    this.idle.push(reader);
  }

  /** A reader for one client: taken on its first read, given back by `release()`. */
  lease(): ReaderLease {
    return new ReaderLease(this);
  }

  /** Idle readers now (for tests and metrics). */
  get idleCount(): number {
    return this.idle.length;
  }

  close(): void {
    for (const reader of this.idle.splice(0)) reader.disconnect();
  }
}

/** One client's reader from BlockingReaders; knows whether a read is in flight, so `release()` closes it then. */
export class ReaderLease {
  private reader: Redis | undefined;
  private reading = false;

  constructor(private readonly readers: BlockingReaders) {}

  async read<T>(read: (reader: Redis) => Promise<T>): Promise<T> {
    this.reader ??= this.readers.acquire();
    this.reading = true;
    try {
      return await read(this.reader);
    } finally {
      this.reading = false;
    }
  }

  release(): void {
    if (this.reader) this.readers.release(this.reader, this.reading);
    this.reader = undefined;
  }
}

/** Fails fast (one clear error) when Redis does not answer within `timeoutMs`. */
export async function pingRedis(url: string, timeoutMs = 2000): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: timeoutMs, retryStrategy: () => null });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    await redis.ping();
  } finally {
    redis.disconnect();
  }
}
