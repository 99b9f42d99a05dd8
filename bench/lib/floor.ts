import { createHash, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import Redis from 'ioredis';
import { Pool } from 'pg';
import { DEMO_PROJECT_ID, DEPENDENCY_FILES, allowedFrom, resourceLimitsOf } from '@velocity/contracts';
import { LOCAL_USER_ID } from '../../apps/api/src/auth/auth-user';
import { pool } from './client';

/**
 * The floor of POST → ready: the Redis round trips and Postgres statements the
 * path issues (read from the code, listed in FLOOR_PATH), issued in the same
 * order with plain clients (pg, ioredis) and nothing else: no HTTP, no Nest, no
 * BullMQ, no event loop shared with other work. The same SQL functions, the
 * same arguments, one pg pool
 * and one Redis connection for the api's part and another pair for the
 * provisioner's, as the services have.
 */
export const FLOOR_PATH = {
  api: {
    sql: ['vp_ensure_project (demo project)', 'vp_create_session_within_quota (row `queued`, committed; no limit without auth)'],
    redis: ['MULTI XADD+EXPIRE `queued` event', 'BullMQ addJob (one EVALSHA)'],
  },
  provisioner: {
    sql: [
      'ensure-project: vp_ensure_project',
      'ensure-project: the project\'s dependency files (it has them: no seed, and install-dependencies reads no more)',
      'commit-session: vp_transition_session queued → creating (the row is read only when that does not apply)',
      'create-machine: vp_transition_session → starting (machine recorded)',
      'verify-url: the edge selects the row (not active yet, so not cached)',
      'activate: vp_transition_session → active',
    ],
    redis: [
      'BullMQ moveToActive (one EVALSHA)',
      'activate: BullMQ add of the delayed expiry job (one EVALSHA)',
      "MULTI 11 × XADD+EXPIRE: the steps' progress, held (up to 20 ms; the path is shorter), with `ready`",
    ],
  },
  /** Left out: work off the path (job completion after `ready`, the client's XREAD wake-ups, logs). */
} as const;

export const FLOOR_COUNTS = {
  sql: FLOOR_PATH.api.sql.length + FLOOR_PATH.provisioner.sql.length,
  redis: FLOOR_PATH.api.redis.length + FLOOR_PATH.provisioner.redis.length,
};

export interface Floor {
  run(count: number, concurrency: number): Promise<number[]>;
  close(): Promise<void>;
}

export function createFloor(options: { databaseUrl: string; redisUrl: string; prefix: string }): Floor {
  const apiPool = new Pool({ connectionString: options.databaseUrl, max: 10 });
  const provPool = new Pool({ connectionString: options.databaseUrl, max: 10 });
  const apiRedis = new Redis(options.redisUrl, { maxRetriesPerRequest: null });
  const provRedis = new Redis(options.redisUrl, { maxRetriesPerRequest: null });
  const limits = JSON.stringify(resourceLimitsOf('free'));
  const made: string[] = [];
  let closed = false;
  const key = (kind: string, id: string) => `${options.prefix}:floor:${kind}:${id}`;

  /** One statement, prepared once per connection, as the Postgres store issues them. */
  const sql = (target: Pool, text: string, values: unknown[]) => target.query({ name: `floor_${createHash('sha1').update(text).digest('hex').slice(0, 16)}`, text, values });

  /** The events in one MULTI, as EventLog.appendAll stores them. */
  const xadd = (redis: Redis, sessionId: string, ...events: object[]) => {
    const batch = redis.multi();
    for (const event of events) batch.xadd(key('events', sessionId), 'MAXLEN', '~', '500', '*', 'e', JSON.stringify(event));
    return batch.expire(key('events', sessionId), 3600).exec();
  };

  async function one(): Promise<number> {
    const id = randomUUID();
    made.push(id);
    const t0 = performance.now();
    // api: POST /v1/sessions
    await sql(apiPool, 'select * from vp_ensure_project($1, $2, $3)', [DEMO_PROJECT_ID, 'Demo project', 'react']);
    await sql(apiPool, 'select vp_create_session_within_quota($1, $2, $3, $4, $5::jsonb, $6) as result', [id, DEMO_PROJECT_ID, LOCAL_USER_ID, 'free', limits, null]);
    await xadd(apiRedis, id, { type: 'queued', sessionId: id, at: Date.now() });
    await apiRedis.multi().hset(key('job', id), 'data', JSON.stringify({ sessionId: id })).lpush(key('wait', 'q'), id).exec();
    // provisioner: take the job
    await provRedis.multi().lrem(key('wait', 'q'), 1, id).hset(key('job', id), 'processedOn', Date.now()).hgetall(key('job', id)).exec();
    // Progress is held and stored with `ready` (the whole path takes less than the 20 ms a batch waits).
    const held: object[] = [];
    const step = async (name: string, work: () => Promise<unknown>) => {
      held.push({ type: 'progress', step: name, state: 'started', attempt: 1 });
      await work();
      held.push({ type: 'progress', step: name, state: 'done', ms: 1, attempt: 1 });
    };
    const transition = (to: string, patch: object) =>
      sql(provPool, 'select * from vp_transition_session($1, $2::text[], $3, $4::jsonb)', [id, allowedFrom(to as never), to, JSON.stringify(patch)]);
    await step('ensure-project', async () => {
      await sql(provPool, 'select * from vp_ensure_project($1, $2, $3)', [DEMO_PROJECT_ID, 'Demo project', 'react']);
      // The dependency files (install-dependencies decides by them; having them, the project has files).
      await sql(provPool, 'select file_path, content, content_bytes from project_files where project_id = $1 and file_path = any($2::text[]) order by file_path collate "C"', [DEMO_PROJECT_ID, [...DEPENDENCY_FILES]]);
    });
    await step('commit-session', async () => {
      await transition('creating', {});
    });
    await step('create-machine', () => transition('starting', { container_id: `floor-${id}`, container_url: 'http://127.0.0.1:9' }));
    await step('verify-url', () => sql(apiPool, 'select * from preview_sessions where id = $1', [id]));
    await step('activate', async () => {
      await transition('active', { preview_url: `http://${id}.localhost:9/`, ttl_seconds: 3600 });
      await provRedis.multi().hset(key('expiry', id), 'data', id).zadd(key('delayed', 'q'), Date.now() + 3_600_000, id).exec();
    });
    await xadd(provRedis, id, ...held, { type: 'ready', sessionId: id, at: Date.now() });
    return performance.now() - t0;
  }

  return {
    run: (count, concurrency) => pool(count, concurrency, () => one()),
    async close() {
      if (closed) return;
      closed = true;
      // The floor's rows are no sessions of the system: remove them, and its keys.
      for (let i = 0; i < made.length; i += 500) {
        await sql(apiPool, 'delete from preview_sessions where id = any ($1::uuid[])', [made.slice(i, i + 500)]);
      }
      let cursor = '0';
      do {
        const [next, keys] = await apiRedis.scan(cursor, 'MATCH', `${options.prefix}:floor:*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length > 0) await apiRedis.del(...keys);
      } while (cursor !== '0');
      apiRedis.disconnect();
      provRedis.disconnect();
      await Promise.all([apiPool.end(), provPool.end()]);
    },
  };
}
