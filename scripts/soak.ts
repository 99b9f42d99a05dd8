import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, resolve } from 'node:path';
import Redis from 'ioredis';
import { Pool } from 'pg';
import { sleep } from '@velocity/contracts';
import { APPS, applyMigrations, deleteKeysWithPrefix, dropDatabase, ensureDatabase, withDatabase } from '@velocity/ops';
import { startBenchSystem, type BenchSystem } from '../bench/lib/services';
import { BOUNDS, judge, renderTable } from './soak/report';
import { takeSample, type Sample, type SampleSources } from './soak/sample';
import { EDITED_FILE, runSoakSession, type SoakSessionResult } from './soak/session';

/**
 * `npm run soak -- --minutes N [--every S] [--life S] [--max-live N] [--sample S] [--out docs/soak.md]`:
 * sessions created, used (page load, a file write and its HMR update) and ended
 * at a steady rate for N minutes against the real system on this machine; the
 * services' memory and open descriptors, the prefix's Redis keys and the
 * database's size are sampled over time, then judged against BOUNDS.
 *
 * Its own database (`vp_soak_*`) and queue prefix (`vp-soak-*`); at the end or
 * on Ctrl-C every process it started is stopped, every machine destroyed, the
 * database dropped and the prefix's keys deleted.
 */
const ARGS = (() => {
  try {
    return parseArgs();
  } catch (err) {
    console.error(`soak: ${(err as Error).message}`);
    process.exit(2);
  }
})();

/** The flags and their defaults; an unknown flag or a bad number is refused, naming it. */
function parseArgs() {
  const known = new Set(['--minutes', '--every', '--life', '--max-live', '--sample', '--warmup', '--out']);
  const unknown = process.argv.slice(2).filter((arg, i, all) => arg.startsWith('--') && !known.has(arg) && !known.has(all[i - 1]));
  if (unknown.length > 0) throw new Error(`unknown flag ${unknown[0]} (known: ${[...known].join(', ')})`);
  return {
    minutes: numberArg('--minutes', 60),
    /** A new session this often (seconds). */
    everyS: numberArg('--every', 10),
    /** Each session's life from POST to DELETE (seconds). */
    lifeS: numberArg('--life', 45),
    /** At most this many sessions at once (the machine has 2 cores; each session is a Vite server); a tick with that many live starts none. */
    maxLive: numberArg('--max-live', 5),
    sampleS: numberArg('--sample', 30),
    /** Samples before this are warm-up (the services' first minutes); runs shorter than twice it take the 2nd sample as the baseline. */
    warmupS: numberArg('--warmup', 5) * 60,
    out: argValue('--out'),
  };
}

const log = (msg: string) => process.stdout.write(`soak: ${msg}\n`);

/** What to undo, newest last, on a normal end, an error or Ctrl-C; each is safe to run twice. */
const undo: Array<() => Promise<unknown>> = [];
async function undoAll(): Promise<void> {
  for (const step of undo.splice(0).reverse()) await step().catch((err) => log(`cleaning up: ${(err as Error).message}`));
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping what the soak started`);
    void undoAll().finally(() => process.exit(130));
  });
}

async function main() {
  const id = randomBytes(4).toString('hex');
  const databaseUrl = withDatabase(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres', `vp_soak_${id}`);
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const prefix = `vp-soak-${id}`;
  log(`database vp_soak_${id}, queue prefix ${prefix}; ${ARGS.minutes} min, a session every ${ARGS.everyS} s living ${ARGS.lifeS} s (at most ${ARGS.maxLive} at once), a sample every ${ARGS.sampleS} s`);
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 2 });
  undo.push(async () => redis.disconnect());
  await ensureDatabase(databaseUrl);
  undo.push(() => dropDatabase(databaseUrl), () => deleteKeysWithPrefix(redis, prefix).then((n) => log(`deleted ${n} Redis keys under ${prefix}*`)));
  await applyMigrations(databaseUrl);
  const db = new Pool({ connectionString: databaseUrl, max: 1 });
  undo.push(() => db.end());
  const sys = await startBenchSystem({
    databaseUrl,
    queuePrefix: prefix,
    // No operator servers: their default ports may be taken by another run on this machine.
    env: { MACHINE_PROVIDER: 'local', PROVISIONER_METRICS_PORT: '0', CLEANUP_METRICS_PORT: '0' },
  });
  undo.push(() => sys.stop());
  log(`api ${sys.baseUrl} (pid ${sys.pids.api}), provisioner pid ${sys.pids.provisioner}, cleanup pid ${sys.pids.cleanup}`);
  const run = await soak(sys, { pids: sys.pids, machines: sys.machines, redis, prefix, db, sessionIds: new Set() });
  await report(run);
}

interface SoakRun {
  samples: Sample[];
  afterDrain: Sample;
  errors: Map<string, number>;
  /** Sessions the api still lists as live once every session was ended. */
  liveInApi: number;
}

/** Starts sessions and takes samples at their steady rates until the time is up, then lets the live sessions end. */
async function soak(sys: BenchSystem, sources: SampleSources & { sessionIds: Set<string> }): Promise<SoakRun> {
  const projects = await createProjects(sys.baseUrl, ARGS.maxLive);
  const counts = { started: 0, ok: 0, failed: 0, live: 0 };
  const errors = new Map<string, number>();
  const inFlight = new Set<Promise<void>>();
  const t0 = Date.now();
  const end = t0 + ARGS.minutes * 60_000;
  const startSession = () => {
    const project = projects.pop();
    if (!project) return;
    counts.started++;
    counts.live++;
    const done = runSoakSession({ baseUrl: sys.baseUrl, ...project, lifeMs: ARGS.lifeS * 1000, onStarted: (sid) => sources.sessionIds.add(sid) }).then((result) => {
      counts.live--;
      projects.push(project);
      recordResult(result, counts, errors);
      inFlight.delete(done);
    });
    inFlight.add(done);
  };
  const samples: Sample[] = [];
  const sampler = async () => {
    for (let k = 0; t0 + k * ARGS.sampleS * 1000 <= end; k++) {
      await sleep(Math.max(0, t0 + k * ARGS.sampleS * 1000 - Date.now()));
      const sample = await takeSample(sources, (Date.now() - t0) / 1000, counts);
      samples.push(sample);
      log(summary(sample));
    }
  };
  const starter = async () => {
    for (let k = 0; t0 + k * ARGS.everyS * 1000 < end; k++) {
      await sleep(Math.max(0, t0 + k * ARGS.everyS * 1000 - Date.now()));
      if (counts.live < ARGS.maxLive) startSession();
      else log(`${ARGS.maxLive} sessions live: no new session this tick`);
    }
  };
  await Promise.all([sampler(), starter()]);
  log(`time is up: waiting for ${inFlight.size} live sessions to end`);
  await Promise.all([...inFlight]);
  await waitMachinesGone(sys, 60_000);
  const afterDrain = await takeSample(sources, (Date.now() - t0) / 1000, counts);
  log(summary(afterDrain));
  return { samples, afterDrain, errors, liveInApi: await countLiveSessions(sys.baseUrl) };
}

function recordResult(result: SoakSessionResult, counts: { ok: number; failed: number }, errors: Map<string, number>): void {
  if (!result.error) {
    counts.ok++;
    return;
  }
  counts.failed++;
  // Ids and numbers vary; the kind of error is what repeats.
  const kind = result.error.replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, '<id>').replace(/\d+/g, 'N');
  errors.set(kind, (errors.get(kind) ?? 0) + 1);
  log(`session ${result.sessionId ?? '(not accepted)'} failed: ${result.error}`);
}

/**
 * One React project per session that may be live at once, each leased to one
 * session at a time: a write reaches every preview of its project, so a session
 * sees only its own edit's update.
 */
async function createProjects(baseUrl: string, count: number): Promise<Array<{ projectId: string; original: string }>> {
  return Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const res = await fetch(`${baseUrl}/v1/projects`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: `soak ${i + 1}`, templateType: 'react' }) });
      if (res.status !== 201) throw new Error(`POST /v1/projects answered ${res.status}: ${await res.text()}`);
      const projectId = ((await res.json()) as { id: string }).id;
      const file = await fetch(`${baseUrl}/v1/projects/${projectId}/files/${EDITED_FILE}`);
      if (file.status !== 200) throw new Error(`GET ${EDITED_FILE} of the new project answered ${file.status}`);
      return { projectId, original: await file.text() };
    }),
  );
}

/** How many sessions GET /v1/sessions?status=live lists (the soak's own are all it may list). */
async function countLiveSessions(baseUrl: string): Promise<number> {
  const res = await fetch(`${baseUrl}/v1/sessions?status=live&limit=100`, { signal: AbortSignal.timeout(10_000) });
  if (res.status !== 200) throw new Error(`GET /v1/sessions?status=live answered ${res.status}: ${await res.text()}`);
  return ((await res.json()) as { sessions: unknown[] }).sessions.length;
}

/** Until cleanup has destroyed every machine of the ended sessions; the verdict counts what is left after that. */
async function waitMachinesGone(sys: BenchSystem, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await sys.machines.processes()).length > 0) {
    if (Date.now() > deadline) {
      log(`machines still running ${timeoutMs} ms after the last session ended`);
      return;
    }
    await sleep(250);
  }
}

async function report(run: SoakRun): Promise<void> {
  const { samples, afterDrain, errors, liveInApi } = run;
  if (samples.length < 2) throw new Error(`${samples.length} samples: run for at least two sample intervals (--minutes, --sample)`);
  const warmedUp = samples.findIndex((s) => s.atS >= ARGS.warmupS);
  // Short runs: the second sample, so there is something after the baseline.
  const baseline = warmedUp > 0 && warmedUp < samples.length - 1 && ARGS.minutes * 60 >= 2 * ARGS.warmupS ? warmedUp : 1;
  const table = renderTable(samples, baseline, afterDrain, APPS);
  const verdict = judge(samples, baseline, { ...afterDrain, sessions: { ...afterDrain.sessions, live: liveInApi } }, APPS);
  const errorLines = [...errors].map(([kind, n]) => `- ${n} × ${kind}`);
  console.log(`\n${table}\n\n${verdict.lines.join('\n')}${errorLines.length ? `\n\nErrors:\n${errorLines.join('\n')}` : ''}\n`);
  if (ARGS.out) writeReport(ARGS.out, table, verdict, errorLines, samples[baseline]);
  log(verdict.ok ? 'within every bound' : 'a bound was broken');
  if (!verdict.ok) process.exitCode = 1;
}

function writeReport(out: string, table: string, verdict: { ok: boolean; lines: string[] }, errorLines: string[], baseline: Sample): void {
  const path = resolve(out);
  mkdirSync(dirname(path), { recursive: true });
  const machine = `${cpus().length} cores (${cpus()[0]?.model ?? 'unknown CPU'}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}`;
  const text = [
    '# Soak run',
    '',
    `Written by \`npm run soak -- ${process.argv.slice(2).join(' ')}\` on ${new Date().toISOString()}, on ${machine}.`,
    `A session every ${ARGS.everyS} s, each living ${ARGS.lifeS} s (at most ${ARGS.maxLive} at once): POST and \`ready\` over SSE, its page and modules`,
    `loaded through the preview URL, \`${EDITED_FILE}\` written through the api and its HMR update seen on Vite's socket, then DELETE.`,
    `api, provisioner and cleanup are real processes (dist/), machines are real local preview machines; a sample every ${ARGS.sampleS} s.`,
    `Growth is measured from the baseline (${Math.round(baseline.atS)} s, after warm-up) to the end; RSS and descriptors as the mean of the first and last few samples.`,
    '',
    table,
    '',
    `## Verdict: ${verdict.ok ? 'within every bound' : 'a bound was broken'}`,
    '',
    ...verdict.lines.map((line) => `- ${line}`),
    '',
    ...(errorLines.length ? ['## Errors', '', ...errorLines, ''] : []),
    '## The bounds and why',
    '',
    `- RSS growth per service ≤ ${BOUNDS.rssMb} MB and open descriptors ≤ ${BOUNDS.fds}: V8 grows and shrinks its heap in steps of a few MB and a live session holds a few descriptors (live sessions vary); a leak of ~150 KB or one descriptor per session (360 sessions an hour at the default rate) breaks them.`,
    `- Redis keys naming no session ≤ ${BOUNDS.otherKeys} at any sample: the queues, a file stream per project and the 100 finished sweep jobs cleanup keeps are fixed in number. Keys naming a session ≤ ${BOUNDS.keysPerSession} per session started, and ≤ ${BOUNDS.redisKbPerSession} KB of prefix memory per session started: its event stream (kept EVENT_STREAM_TTL_SECONDS) and finished jobs (kept an hour) are kept by design; anything more per session is never removed.`,
    `- Postgres ≤ ${BOUNDS.postgresKbPerSession} KB per session started since the baseline + ${BOUNDS.postgresSlackMb} MB: a session row and its index entries and one file version are a few KB; a table grows by pages and free-space maps.`,
    `- Failed sessions ≤ ${BOUNDS.failedShare * 100} % of those started; no machine left and no session listed live by the api once the run has ended.`,
    '',
  ].join('\n');
  writeFileSync(path, text);
  log(`wrote ${path}`);
}

function summary(s: Sample): string {
  const services = APPS.map((app) => `${app} ${(s.services[app].rssBytes / 2 ** 20).toFixed(0)} MB/${s.services[app].fds} fds`).join(', ');
  return `${Math.round(s.atS)} s: ${services}; ${s.machines.count} machines; keys ${s.redis.sessionKeys}+${s.redis.otherKeys}; pg ${(s.postgresBytes / 2 ** 20).toFixed(1)} MB; sessions ${s.sessions.started} started, ${s.sessions.ok} ok, ${s.sessions.failed} failed`;
}

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function numberArg(name: string, fallback: number): number {
  const raw = argValue(name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number, not ${JSON.stringify(raw)}`);
  return value;
}

main()
  .catch((err) => {
    console.error(`soak: ${err instanceof Error ? err.stack : String(err)}`);
    process.exitCode = 1;
  })
  .finally(() => undoAll());
