import Redis, { type RedisOptions } from 'ioredis';

/**
 * A Redis connection for BullMQ and the event log. `maxRetriesPerRequest: null`
 * is what BullMQ workers need: commands wait for a reconnect instead of failing.
 */
export function createRedis(url: string, options: RedisOptions = {}): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true, ...options });
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
