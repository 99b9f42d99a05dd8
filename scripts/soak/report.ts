import type { AppName } from '@velocity/ops';
import type { Sample } from './sample';

const MB = 2 ** 20;
const KB = 2 ** 10;

/**
 * The bounds a healthy system stays within, from the baseline sample (the
 * first one after warm-up) to the end. Each is loose enough for what a
 * working system does at a steady rate, tight enough that a leak of one thing
 * per session (360 sessions an hour at the default rate) breaks it.
 */
export const BOUNDS = {
  /**
   * RSS growth of each service. V8 grows and shrinks its heap in steps of a few
   * MB and a service's code paths are still being compiled during the first
   * minutes; 48 MB is far above that swing and below what keeping ~150 KB for
   * each of 360 sessions (a session's events, a response, a closure) would add.
   * Compared as the mean of the first and last few samples, so one collection
   * more or less at either end does not decide it.
   */
  rssMb: 48,
  /**
   * Open descriptors of each service. A live session holds a few in the api
   * (SSE, sockets to its machine) and the number live varies by the max-live
   * setting; one descriptor leaked per session is hundreds an hour.
   */
  fds: 20,
  /**
   * Keys under the prefix that name no session, at any sample: about 20 for the
   * queues and schedulers, one file stream per project, and up to 100 finished
   * sweep jobs the cleanup queue keeps (removeOnComplete: 100; one every 30 s).
   */
  otherKeys: 140,
  /**
   * Keys naming a session, per session started: the records kept by design for a
   * while (its event stream for EVENT_STREAM_TTL_SECONDS, its finished jobs for
   * an hour). More than this means something per session is never removed.
   */
  keysPerSession: 4,
  /** Memory of the prefix's keys added per session started since the baseline (its event stream and job records). */
  redisKbPerSession: 24,
  /**
   * Postgres growth per session started since the baseline, plus 2 MB for the
   * way Postgres extends a table (pages, then free space maps). A session row,
   * its index entries and one file version (dead tuples until autovacuum) are
   * a few KB.
   */
  postgresKbPerSession: 16,
  postgresSlackMb: 2,
  /** Failed sessions: at most 1 % of those started. */
  failedShare: 0.01,
} as const;

export interface Verdict {
  ok: boolean;
  lines: string[];
}

/** The mean of `pick` over the first (or last) `n` samples. */
function meanOf(samples: Sample[], pick: (s: Sample) => number): number {
  return samples.reduce((sum, s) => sum + pick(s), 0) / samples.length;
}

/** The verdict of a run: each bound with its measured value, ✓ or ✗. `afterDrain` is the sample once every session ended, its `live` as the api lists them. */
export function judge(samples: Sample[], baselineIndex: number, afterDrain: Sample, apps: readonly AppName[]): Verdict {
  const tail = samples.slice(baselineIndex);
  // A few samples at each end: a single collection does not decide a bound (one sample each for short runs).
  const n = Math.max(1, Math.min(5, Math.floor(tail.length / 4)));
  const first = tail.slice(0, n);
  const last = tail.slice(-n);
  const base = tail[0];
  const end = tail[tail.length - 1];
  const lines: string[] = [];
  let ok = true;
  const check = (what: string, value: number, bound: number, unit: string) => {
    const pass = value <= bound;
    ok &&= pass;
    lines.push(`${pass ? '✓' : '✗'} ${what}: ${round(value)} ${unit} (bound ${round(bound)} ${unit})`);
  };
  for (const app of apps) {
    check(`${app} RSS growth`, (meanOf(last, (s) => s.services[app].rssBytes) - meanOf(first, (s) => s.services[app].rssBytes)) / MB, BOUNDS.rssMb, 'MB');
    check(`${app} open fds growth`, meanOf(last, (s) => s.services[app].fds) - meanOf(first, (s) => s.services[app].fds), BOUNDS.fds, 'fds');
  }
  const sessionsSince = Math.max(1, end.sessions.started - base.sessions.started);
  check('Redis keys naming no session, most at any sample', Math.max(...samples.map((s) => s.redis.otherKeys)), BOUNDS.otherKeys, 'keys');
  check('Redis keys naming a session, per session started', end.redis.sessionKeys / Math.max(1, end.sessions.started), BOUNDS.keysPerSession, 'keys');
  check('Redis prefix memory growth per session started since the baseline', (end.redis.prefixBytes - base.redis.prefixBytes) / KB / sessionsSince, BOUNDS.redisKbPerSession, 'KB');
  check(
    `Postgres growth (${sessionsSince} sessions started since the baseline)`,
    (end.postgresBytes - base.postgresBytes) / MB,
    (BOUNDS.postgresKbPerSession * sessionsSince) / KB + BOUNDS.postgresSlackMb,
    'MB',
  );
  const allowed = Math.floor(end.sessions.started * BOUNDS.failedShare);
  check(`failed sessions (of ${afterDrain.sessions.started})`, afterDrain.sessions.failed, allowed, 'sessions');
  check('machines left once every session ended', afterDrain.machines.count, 0, 'machines');
  check('sessions the api lists as live once the run ended', afterDrain.sessions.live, 0, 'sessions');
  return { ok, lines };
}

/** The samples as a markdown table, one row each; the baseline row is marked. */
export function renderTable(samples: Sample[], baselineIndex: number, afterDrain: Sample, apps: readonly AppName[]): string {
  const head = [
    'time',
    ...apps.flatMap((app) => [`${app} RSS`, `${app} fds`]),
    'machines (RSS, fds)',
    'Redis used_memory',
    'prefix keys (session / other)',
    'prefix memory',
    'Postgres',
    'sessions started / ok / failed / live',
  ];
  const row = (s: Sample, label: string) => [
    label,
    ...apps.flatMap((app) => [mb(s.services[app].rssBytes), String(s.services[app].fds)]),
    `${s.machines.count} (${mb(s.machines.rssBytes)}, ${s.machines.fds})`,
    mb(s.redis.usedMemoryBytes),
    `${s.redis.sessionKeys} / ${s.redis.otherKeys}`,
    `${round(s.redis.prefixBytes / KB)} KB`,
    mb(s.postgresBytes),
    `${s.sessions.started} / ${s.sessions.ok} / ${s.sessions.failed} / ${s.sessions.live}`,
  ];
  const rows = samples.map((s, i) => row(s, `${clock(s.atS)}${i === baselineIndex ? ' (baseline)' : ''}`));
  rows.push(row(afterDrain, `${clock(afterDrain.atS)} (all ended)`));
  return [head, head.map(() => '---'), ...rows].map((cells) => `| ${cells.join(' | ')} |`).join('\n');
}

function mb(bytes: number): string {
  return `${(bytes / MB).toFixed(1)} MB`;
}

function clock(seconds: number): string {
  return `${Math.floor(seconds / 60)}:${String(Math.round(seconds % 60)).padStart(2, '0')}`;
}

function round(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(Math.abs(value) < 10 ? 2 : 1);
}
