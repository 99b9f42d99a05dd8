import Redis, { type RedisOptions } from 'ioredis';
import { withTimeout } from '@velocity/contracts';

/**
 * A Redis connection for BullMQ and the event log. `maxRetriesPerRequest: null`
 * is what BullMQ workers need: commands wait for a reconnect instead of failing.
 */
export function createRedis(url: string, options: RedisOptions = {}): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true, ...options });
}

/**
 * A Redis connection for code that answers a request (the api): no command waits
 * for Redis to come back. While disconnected a command fails at once (no offline
 * queue), one in flight when the connection drops fails (no retry), and one Redis
 * does not answer fails after `commandTimeoutMs`. The caller answers 503; nothing
 * the client was not told about runs on the next reconnect. Reconnects go on,
 * at most 1 s apart.
 */
export function createRequestRedis(url: string, commandTimeoutMs: number, options: RedisOptions = {}): Redis {
  return new Redis(url, {
    ...requestRedisOptions(commandTimeoutMs),
    ...options,
  });
}

/** The options of createRequestRedis, for connections made elsewhere (BullMQ's queues). */
export function requestRedisOptions(commandTimeoutMs: number): RedisOptions {
  return {
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    enableReadyCheck: true,
    commandTimeout: commandTimeoutMs,
    connectTimeout: Math.max(commandTimeoutMs, 1000),
    retryStrategy: (attempt) => Math.min(attempt * 100, 1000),
  };
}

/** Resolves once `redis` is ready for commands; rejects naming the wait after `timeoutMs`. */
export async function redisReady(redis: Redis, timeoutMs: number): Promise<Redis> {
  if (redis.status === 'ready') return redis;
  await withTimeout(new Promise<void>((resolve) => redis.once('ready', () => resolve())), timeoutMs, `Redis at ${redisAddress(redis)} to be ready`);
  return redis;
}

function redisAddress(redis: Redis): string {
  const { host, port, path } = redis.options;
  return path ?? `${host}:${port}`;
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

/** Deletes every key that starts with `prefix` (a test's or a run's queue prefix); returns how many were deleted. */
export async function deleteKeysWithPrefix(redis: Redis, prefix: string): Promise<number> {
  let deleted = 0;
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) deleted += await redis.del(...keys);
  } while (cursor !== '0');
  return deleted;
}
