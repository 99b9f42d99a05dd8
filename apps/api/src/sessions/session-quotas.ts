import { Inject, Injectable } from '@nestjs/common';
import type Redis from 'ioredis';
import type { Config, Tier } from '@velocity/contracts';
import type { AuthUser } from '../auth/auth-user';
import { ApiException } from '../common/api-exception';
import { CONFIG, REDIS } from '../tokens';

const WINDOW_MS = 60_000;

/**
 * The limits of one user's sessions:
 * - live sessions at once, by the user's tier (QUOTA_FREE_CONCURRENT, QUOTA_PRO_CONCURRENT),
 *   enforced by the database in the same statement as the insert (createSessionWithinQuota);
 * - session requests per minute (RATE_LIMIT_SESSIONS_PER_MINUTE), a fixed window in Redis.
 * Both answer 429 with Retry-After and a message naming the limit. The local user
 * (auth off) has neither.
 */
@Injectable()
export class SessionQuotas {
  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(REDIS) private readonly redis: Redis,
  ) {}

  /** How many live sessions the user may have; null: no limit. */
  maxLive(user: AuthUser): number | null {
    if (user.local) return null;
    return this.config[concurrentVariable(user.tier)];
  }

  /** 429 when the user has asked for more sessions this minute than the limit; counts this request. */
  async takeRequest(user: AuthUser): Promise<void> {
    if (user.local) return;
    const limit = this.config.RATE_LIMIT_SESSIONS_PER_MINUTE;
    const now = Date.now();
    const window = Math.floor(now / WINDOW_MS);
    const key = `${this.config.QUEUE_PREFIX}:ratelimit:sessions:${user.id}:${window}`;
    const replies = await this.redis.multi().incr(key).pexpire(key, WINDOW_MS + 5_000).exec();
    const count = Number(replies?.[0]?.[1] ?? 0);
    if (count <= limit) return;
    const retryAfter = Math.max(1, Math.ceil(((window + 1) * WINDOW_MS - now) / 1000));
    throw new ApiException(
      {
        statusCode: 429,
        error: 'Too Many Requests',
        message: `More than ${limit} session requests in a minute (RATE_LIMIT_SESSIONS_PER_MINUTE); retry in ${retryAfter} s`,
        limit: 'RATE_LIMIT_SESSIONS_PER_MINUTE',
        max: limit,
        retryAfterSeconds: retryAfter,
      },
      { 'retry-after': String(retryAfter) },
    );
  }

  /** The 429 for a user at their live-session limit; Retry-After: until the soonest of them expires (at most 60 s), else 10 s. */
  overQuota(user: AuthUser, live: number, limit: number, nextExpiresAt: string | null): ApiException {
    const variable = concurrentVariable(user.tier);
    const untilExpiry = nextExpiresAt ? Math.ceil((Date.parse(nextExpiresAt) - Date.now()) / 1000) : 10;
    const retryAfter = Math.min(60, Math.max(1, untilExpiry));
    return new ApiException(
      {
        statusCode: 429,
        error: 'Too Many Requests',
        message:
          `You have ${live} live sessions, the ${user.tier} tier's limit of ${limit} concurrent sessions (${variable}); ` +
          'stop one (DELETE /v1/sessions/:id) or wait for one to end',
        limit: variable,
        max: limit,
        live,
        retryAfterSeconds: retryAfter,
      },
      { 'retry-after': String(retryAfter) },
    );
  }
}

const concurrentVariable = (tier: Tier) => (tier === 'pro' ? 'QUOTA_PRO_CONCURRENT' : 'QUOTA_FREE_CONCURRENT') as 'QUOTA_PRO_CONCURRENT' | 'QUOTA_FREE_CONCURRENT';
