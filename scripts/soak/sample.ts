import { readdirSync } from 'node:fs';
import type Redis from 'ioredis';
import type { Pool } from 'pg';
import type { LocalMachineProvider } from '@velocity/machines';
import type { AppName } from '@velocity/ops';
import { processTree, rssOf } from '../../bench/lib/proc';

/** One process's footprint: resident memory (VmRSS) and open file descriptors (its open handles). */
export interface Footprint {
  rssBytes: number;
  fds: number;
}

/** What the soak records every sample interval. */
export interface Sample {
  /** Seconds since the first session. */
  atS: number;
  services: Record<AppName, Footprint>;
  /** The live machines' process trees, summed. */
  machines: Footprint & { count: number };
  redis: {
    /** The whole server's used_memory (other work on this Redis counts too: for context). */
    usedMemoryBytes: number;
    /** Keys under the soak's prefix that name one of its sessions (records kept by design for a while). */
    sessionKeys: number;
    /** Keys under the soak's prefix that name no session: queues, schedulers, shared state. */
    otherKeys: number;
    /** MEMORY USAGE summed over every key under the prefix. */
    prefixBytes: number;
  };
  postgresBytes: number;
  sessions: { started: number; ok: number; failed: number; live: number };
}

export interface SampleSources {
  pids: Record<AppName, number>;
  machines: LocalMachineProvider;
  redis: Redis;
  prefix: string;
  /** A pool on the soak's own database. */
  db: Pool;
  /** Every session id the soak was given so far. */
  sessionIds: ReadonlySet<string>;
}

/** Open file descriptors of a process (/proc/<pid>/fd); 0 when it is gone. */
export function fdsOf(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

export async function takeSample(sources: SampleSources, atS: number, sessions: Sample['sessions']): Promise<Sample> {
  const services = Object.fromEntries(Object.entries(sources.pids).map(([app, pid]) => [app, { rssBytes: rssOf(pid), fds: fdsOf(pid) }])) as Record<AppName, Footprint>;
  return {
    atS,
    services,
    machines: await machinesFootprint(sources.machines),
    redis: await redisFootprint(sources.redis, sources.prefix, sources.sessionIds),
    postgresBytes: Number((await sources.db.query<{ bytes: string }>('select pg_database_size(current_database()) as bytes')).rows[0].bytes),
    sessions: { ...sessions },
  };
}

async function machinesFootprint(machines: LocalMachineProvider): Promise<Sample['machines']> {
  const pids = (await machines.processes()).map((p) => p.pid);
  const tree = pids.flatMap((pid) => processTree(pid));
  return { count: pids.length, rssBytes: tree.reduce((sum, pid) => sum + rssOf(pid), 0), fds: tree.reduce((sum, pid) => sum + fdsOf(pid), 0) };
}

/** The prefix's keys, split by whether they name a session of the soak, and their memory. */
async function redisFootprint(redis: Redis, prefix: string, sessionIds: ReadonlySet<string>): Promise<Sample['redis']> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    keys.push(...found);
  } while (cursor !== '0');
  const pipeline = redis.pipeline();
  for (const key of keys) pipeline.memory('USAGE', key);
  const usage = (await pipeline.exec()) ?? [];
  const prefixBytes = usage.reduce((sum, [, bytes]) => sum + (Number(bytes) || 0), 0);
  const sessionKeys = keys.filter((key) => [...key.matchAll(UUID)].some(([id]) => sessionIds.has(id))).length;
  const info = await redis.info('memory');
  const usedMemoryBytes = Number(/^used_memory:(\d+)/m.exec(info)?.[1] ?? 0);
  return { usedMemoryBytes, sessionKeys, otherKeys: keys.length - sessionKeys, prefixBytes };
}

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;
