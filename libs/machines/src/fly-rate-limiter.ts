import type Redis from 'ioredis';
import { sleep } from '@velocity/contracts';

/** A token bucket: `perSecond` requests a second on average, up to `burst` at once. */
export interface RateLimit {
  perSecond: number;
  burst: number;
}

/**
 * Fly's published Machines API limits: per action and per machine (per app for
 * the app-wide calls: create, list), 1 request a second with bursts of 3; Get
 * Machine 5 a second with bursts of 10.
 */
export const FLY_ACTION_LIMIT: RateLimit = { perSecond: 1, burst: 3 };
export const FLY_GET_MACHINE_LIMIT: RateLimit = { perSecond: 5, burst: 10 };

/** Which of Fly's rate limits a Machines API call counts against: its bucket's name and limit. */
export function flyBucketOf(method: string, path: string): { bucket: string; limit: RateLimit } {
  const [route] = path.split('?', 1);
  // /apps/<app>/machines[/<id>[/<action>]]
  const [, , app, , machineId, action] = route.split('/');
  if (!machineId) return { bucket: `${app}:${method === 'POST' ? 'create' : 'list'}`, limit: FLY_ACTION_LIMIT };
  if (!action && method === 'GET') return { bucket: `${app}:${machineId}:get`, limit: FLY_GET_MACHINE_LIMIT };
  return { bucket: `${app}:${machineId}:${action ?? method.toLowerCase()}`, limit: FLY_ACTION_LIMIT };
}

/**
 * Takes a token from the bucket, or says how many ms until one is there. The
 * clock is Redis' own (TIME), so every provisioner counts on the same one.
 */
const TAKE_SCRIPT = `
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - at) * rate / 1000)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) * 1000 / rate) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait`;

/**
 * Keeps every provisioner (and cleanup) of a deployment within Fly's Machines
 * API limits together: one token bucket per action in Redis, shared by all of
 * them, so a burst of sessions waits its turn instead of collecting 429s.
 */
export class FlyRateLimiter {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {
    // Sent once, then called by its hash (EVALSHA): every Machines API call takes a token.
    if (!('flyTakeToken' in redis)) redis.defineCommand('flyTakeToken', { numberOfKeys: 1, lua: TAKE_SCRIPT });
  }

  /** Resolves when the call may be made; rejects with the signal's reason when it aborts first. */
  async acquire(method: string, path: string, signal?: AbortSignal): Promise<void> {
    for (;;) {
      signal?.throwIfAborted();
      const wait = await this.tryAcquire(method, path);
      if (wait === 0) return;
      await sleep(wait, signal);
    }
  }

  /** Takes a token for the call now (0), or says how many ms until there is one. */
  async tryAcquire(method: string, path: string): Promise<number> {
    const { bucket, limit } = flyBucketOf(method, path);
    const take = (this.redis as Redis & { flyTakeToken(key: string, perSecond: number, burst: number): Promise<number> }).flyTakeToken;
    return Number(await take.call(this.redis, `${this.prefix}:fly-rate:${bucket}`, limit.perSecond, limit.burst));
  }
}
