import { randomUUID } from 'node:crypto';
import { Inject, Injectable, OnModuleDestroy, Optional } from '@nestjs/common';
import type Redis from 'ioredis';
import { withTimeout, type Config, type Tier } from '@velocity/contracts';
import type { AuthUser } from '../auth/auth-user';
import { ApiException } from '../common/api-exception';
import { OUTAGE_RETRY_AFTER_SECONDS, unavailable } from '../common/unavailable';
import { CONFIG, REDIS } from '../tokens';

/** Lease timing: how long a lease lives without a refresh, how often held ones are refreshed, how long taking one may wait for Redis. */
export interface StreamLeaseTiming {
  ttlMs: number;
  refreshEveryMs: number;
  takeTimeoutMs: number;
}

/** Overrides StreamLeaseTiming (specs); the defaults below otherwise. */
export const STREAM_LEASE_TIMING = Symbol('STREAM_LEASE_TIMING');

/** A crashed replica's leases stop counting after ttlMs; live streams refresh theirs well before. */
const DEFAULT_TIMING: StreamLeaseTiming = { ttlMs: 30_000, refreshEveryMs: 10_000, takeTimeoutMs: 2_000 };

/** Retry-After of a refusal: a stream ends when its client leaves, which nothing here can foresee. */
const OVER_QUOTA_RETRY_AFTER_SECONDS = 10;

/**
 * KEYS[1]: the user's sorted set of leases (member: lease id, score: expiry in ms).
 * ARGV: now, expiry, lease id, limit, key TTL (ms). Drops expired leases, then adds
 * this one only while fewer than `limit` remain. Returns {1, count} or {0, count}.
 * One script: replicas taking leases of one user at once never pass the limit.
 */
const TAKE_LEASE = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local count = redis.call('ZCARD', KEYS[1])
if count >= tonumber(ARGV[4]) then return {0, count} end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {1, count + 1}
`;

type LeaseRedis = Redis & { vpTakeStreamLease(key: string, now: number, expiry: number, leaseId: string, limit: number, keyTtlMs: number): Promise<[number, number]> };

/** One held lease; `release` is idempotent. */
export interface StreamLease {
  release(): void;
}

const NO_LEASE: StreamLease = { release: () => undefined };

/**
 * The live event streams (SSE) of one user, bounded by tier (QUOTA_FREE_STREAMS,
 * QUOTA_PRO_STREAMS) across every api replica: each open stream holds a lease in
 * a Redis sorted set per user, scored by its expiry. Held leases are refreshed
 * together on one timer while their streams live, and removed when they close; a
 * crashed replica's leases expire. Over the limit: 429 naming the variable, before
 * the stream starts. Redis not answering in time: 503. The local user (auth off)
 * has no limit.
 */
@Injectable()
export class StreamLeases implements OnModuleDestroy {
  private readonly redis: LeaseRedis;
  private readonly timing: StreamLeaseTiming;
  /** Lease id → its user's key: what the refresh timer renews. */
  private readonly held = new Map<string, string>();
  private readonly refresher: NodeJS.Timeout;

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(REDIS) redis: Redis,
    @Optional() @Inject(STREAM_LEASE_TIMING) timing?: StreamLeaseTiming,
  ) {
    this.timing = timing ?? DEFAULT_TIMING;
    if (!('vpTakeStreamLease' in redis)) redis.defineCommand('vpTakeStreamLease', { numberOfKeys: 1, lua: TAKE_LEASE });
    this.redis = redis as LeaseRedis;
    this.refresher = setInterval(() => void this.refresh(), this.timing.refreshEveryMs);
    this.refresher.unref();
  }

  /** A lease for one more stream of this user; 429 over the tier's limit, 503 when Redis does not answer in time. */
  async take(user: AuthUser): Promise<StreamLease> {
    if (user.local) return NO_LEASE;
    const variable = streamsVariable(user.tier);
    const limit = this.config[variable];
    const key = this.keyOf(user.id);
    const leaseId = randomUUID();
    const now = Date.now();
    const asked = this.redis.vpTakeStreamLease(key, now, now + this.timing.ttlMs, leaseId, limit, this.timing.ttlMs * 2);
    let reply: [number, number];
    try {
      reply = await withTimeout(asked, this.timing.takeTimeoutMs, 'Redis to grant a stream lease');
    } catch (err) {
      // Granted after all, too late: given back, so it does not hold a place until it expires.
      asked.then(([granted]) => granted === 1 && this.remove(key, leaseId), () => undefined);
      throw streamsUnavailable(variable, err as Error);
    }
    const [granted, live] = reply.map(Number);
    if (granted !== 1) throw overStreamQuota(user.tier, variable, live, limit);
    this.held.set(leaseId, key);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.held.delete(leaseId);
        this.remove(key, leaseId);
      },
    };
  }

  /** How many leases this process holds (for specs and metrics). */
  heldCount(): number {
    return this.held.size;
  }

  onModuleDestroy(): void {
    clearInterval(this.refresher);
  }

  private keyOf(userId: string): string {
    return `${this.config.QUEUE_PREFIX}:streams:${userId}`;
  }

  /** Not waited for: a lease Redis did not drop expires by itself. */
  private remove(key: string, leaseId: string): void {
    this.redis.zrem(key, leaseId).catch(() => undefined);
  }

  /** Moves every held lease's expiry on, in one round trip; `XX`: a lease already given back is not brought back. */
  private async refresh(): Promise<void> {
    if (this.held.size === 0) return;
    const expiry = Date.now() + this.timing.ttlMs;
    const pipeline = this.redis.pipeline();
    const keys = new Set<string>();
    for (const [leaseId, key] of this.held) {
      pipeline.zadd(key, 'XX', expiry, leaseId);
      keys.add(key);
    }
    for (const key of keys) pipeline.pexpire(key, this.timing.ttlMs * 2);
    // A failed refresh is tried again next time; a lease that expired meanwhile stops counting, nothing worse.
    await pipeline.exec().catch(() => undefined);
  }
}

type StreamsVariable = 'QUOTA_FREE_STREAMS' | 'QUOTA_PRO_STREAMS';

const streamsVariable = (tier: Tier): StreamsVariable => (tier === 'pro' ? 'QUOTA_PRO_STREAMS' : 'QUOTA_FREE_STREAMS');

function overStreamQuota(tier: Tier, variable: StreamsVariable, live: number, limit: number): ApiException {
  return new ApiException(
    {
      statusCode: 429,
      error: 'Too Many Requests',
      message:
        `You have ${live} open event streams, the ${tier} tier's limit of ${limit} streams at once (${variable}); ` +
        'close one (each EventSource or open GET /v1/sessions/:id/events holds one) and retry',
      limit: variable,
      max: limit,
      live,
      retryAfterSeconds: OVER_QUOTA_RETRY_AFTER_SECONDS,
    },
    { 'retry-after': String(OVER_QUOTA_RETRY_AFTER_SECONDS) },
  );
}

function streamsUnavailable(variable: StreamsVariable, err: Error): ApiException {
  return unavailable('redis', `Redis did not answer (${err.message}), so the open streams could not be counted against ${variable}; retry in ${OUTAGE_RETRY_AFTER_SECONDS} s`);
}
