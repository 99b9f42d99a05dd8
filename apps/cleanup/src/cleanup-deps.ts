import type { Queue } from 'bullmq';
import type Redis from 'ioredis';
import type { Config } from '@velocity/contracts';
import type { WarmPool } from '@velocity/machines';
import type { EndSessionDeps } from './end-session';

/** What the cleanup use cases get from the composition root (main.ts, or a test). */
export interface CleanupDeps extends EndSessionDeps {
  config: Config;
  /** The provisioning queue: lost jobs are added again, jobs of reaped sessions removed. */
  sessionsQueue: Queue;
  /** The cleanup queue itself (expiry jobs). */
  cleanupQueue: Queue;
  /** For the sweep's own marks (when an orphan machine was first seen, destroy claims). */
  redis: Redis;
  /** The warm pool's registry: its machines are not orphans while it knows them. */
  pool?: WarmPool;
}

/** Runs `fn` over `items`, at most `limit` at a time; resolves when all are done (rejections are the caller's to catch). */
export async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]);
  });
  await Promise.all(lanes);
}

/** How many sessions one sweep handles at once. */
export const SWEEP_CONCURRENCY = 8;
