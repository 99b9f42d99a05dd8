import type Redis from 'ioredis';
import { errorMessage, withTimeout } from '@velocity/contracts';
import type { SessionRecords } from '@velocity/session-store';

/**
 * Readiness: may this process take work? It checks what it depends on (Redis,
 * Postgres), each within a timeout, and names what failed. Liveness (/health)
 * checks nothing but that the process answers.
 */
export type ReadinessCheck = () => Promise<unknown>;

export interface ReadinessReport {
  status: 'ready' | 'not ready';
  /** `ok`, or why the check failed. */
  checks: Record<string, string>;
  /** Names of the failed checks; empty when ready. */
  failing: string[];
}

export async function checkReadiness(checks: Record<string, ReadinessCheck>, timeoutMs: number): Promise<ReadinessReport> {
  const entries = await Promise.all(
    Object.entries(checks).map(async ([name, check]) => {
      try {
        await withTimeout(check(), timeoutMs, name);
        return [name, 'ok'] as const;
      } catch (err) {
        return [name, `failing: ${errorMessage(err)}`] as const;
      }
    }),
  );
  const failing = entries.filter(([, result]) => result !== 'ok').map(([name]) => name);
  return { status: failing.length === 0 ? 'ready' : 'not ready', checks: Object.fromEntries(entries), failing };
}

/**
 * Redis through the process's own connection: a connection that is not `ready`
 * fails at once (a PING would only wait in the offline queue), else PING.
 */
export function redisCheck(redis: Redis): ReadinessCheck {
  return async () => {
    if (redis.status !== 'ready') throw new Error(`connection is ${redis.status}`);
    await redis.ping();
  };
}

const NIL_UUID = '00000000-0000-0000-0000-000000000000';

/** The database through the SessionStore port (so it holds for any adapter): a read of a row that never exists. */
export function storeCheck(store: SessionRecords): ReadinessCheck {
  return () => store.getSession(NIL_UUID);
}

/** The body of a 503: the report plus one line naming what failed. */
export function notReadyBody(report: ReadinessReport) {
  return { statusCode: 503, error: 'Service Unavailable', message: `not ready: ${report.failing.join(', ')} failing`, ...report };
}
