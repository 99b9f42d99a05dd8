import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import Redis from 'ioredis';
import { WarmPool } from '@velocity/machines';
import { applyMigrations, deleteKeysWithPrefix, dropDatabase, ensureDatabase, withDatabase } from '@velocity/ops';
import { openHttp, readText } from '@velocity/runtime';
import { fixtureProjectFiles, uploadProject } from '@velocity/testing';
import { urlChecks, checkUrl, countUrlAnswer, pool, runSession, stopSessions, waitEnded, type SessionRun } from './lib/client';
import { FLOOR_COUNTS, createFloor } from './lib/floor';
import { cpuMeter, machineBusyMs, pidsByName, processTree, rssOf, treeCpuMs, treeRss } from './lib/proc';
import { renderTable, writeReport, type Results } from './lib/report';
import { load } from './lib/routing';
import { startBenchSystem, type BenchSystem } from './lib/services';
import { reactTemplateFiles, startDirectVite } from './lib/direct-vite';
import { measureDependencies } from './lib/dependencies';
import { PAGE_LOAD_FIXTURE, componentModulesOf, measurePageLoads } from './lib/page-load';
import { median } from './lib/stats';

/**
 * `npm run bench [-- --quick] [-- --only local|pageload|pool|noop|deps] [-- --json FILE]` (FILE: every raw figure): time to ready, orchestration
 * overhead, routing overhead, page load, memory and "Session not found" count, against the
 * real services on this machine. Prints one table and writes it to docs/benchmarks.md.
 *
 * Its own database and queue prefix; every process it starts is stopped, every
 * machine destroyed, the database dropped and the prefix's Redis keys deleted.
 */
const QUICK = process.argv.includes('--quick');
const ONLY = argValue('--only');

/** Sizes of each part; `--quick` is for trying the benchmark out, not for figures. */
const SIZE = QUICK
  ? { seq: 3, waves: 1, wave: 5, noopSeq: 40, noopConc: 50, noopRun: 100, noopRuns: 1, routeS: 3, warmS: 1, pageLoads: 3, pageWarmUps: 1, depsUncached: 1, depsCached: 3, depsTemplate: 3, depsPooled: 3 }
  : { seq: 10, waves: 2, wave: 20, noopSeq: 200, noopConc: 50, noopRun: 300, noopRuns: 3, routeS: 10, warmS: 2, pageLoads: 10, pageWarmUps: 2, depsUncached: 5, depsCached: 10, depsTemplate: 10, depsPooled: 10 };

const log = (msg: string) => process.stdout.write(`bench: ${msg}\n`);

/**
 * What to undo, newest first, if the run is interrupted (Ctrl-C, SIGTERM): the
 * `finally` blocks below do it on a normal end or an error; these do it when the
 * process is told to stop in the middle. Each is safe to run twice.
 */
const undo: Array<() => Promise<unknown>> = [];
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping what the benchmark started`);
    void (async () => {
      for (const step of [...undo].reverse()) await step().catch(() => undefined);
      process.exit(130);
    })();
  });
}

async function main() {
  const started = new Date();
  const id = randomBytes(4).toString('hex');
  const databaseUrl = withDatabase(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres', `vp_bench_${id}`);
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const prefix = `vp-bench-${id}`;
  const results: Results = { startedAt: started.toISOString(), quick: QUICK, cores: cpus().length, loadBefore: loadavg()[0], size: SIZE };
  log(`database ${databaseUrl.replace(/\/\/[^@]*@/, '//')}, queue prefix ${prefix}`);
  await ensureDatabase(databaseUrl);
  undo.push(() => dropDatabase(databaseUrl), () => deleteKeys(redisUrl, prefix));
  try {
    await applyMigrations(databaseUrl);
    if (!ONLY || ONLY === 'local') results.local = await localSection(databaseUrl, `${prefix}-local`);
    if (!ONLY || ONLY === 'pageload') results.pageLoad = await pageLoadSection(databaseUrl, `${prefix}-pageload`);
    if (!ONLY || ONLY === 'pool') results.pool = await poolSection(databaseUrl, `${prefix}-pool`);
    if (!ONLY || ONLY === 'noop') results.noop = await noopSection(databaseUrl, redisUrl, `${prefix}-noop`);
    if (!ONLY || ONLY === 'deps') {
      log('10. a generated app with its own dependencies (local test registry): uncached, cached, and the React template cold');
      results.deps = await measureDependencies(
        { databaseUrl, queuePrefix: `${prefix}-deps`, uncached: SIZE.depsUncached, cached: SIZE.depsCached, template: SIZE.depsTemplate, pooled: SIZE.depsPooled },
        retire,
        log,
      );
    }
  } finally {
    await dropDatabase(databaseUrl).catch((err) => log(`could not drop ${databaseUrl}: ${(err as Error).message}`));
    const left = await deleteKeys(redisUrl, prefix);
    log(`dropped the database, deleted ${left} Redis keys under ${prefix}*`);
  }
  results.urlChecks = { ...urlChecks };
  results.loadAfter = loadavg()[0];
  results.seconds = (Date.now() - started.getTime()) / 1000;
  const machine = `${cpus().length} cores (${cpus()[0]?.model ?? 'unknown CPU'}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}`;
  const table = renderTable(results);
  console.log(`\n${table}\n`);
  const jsonPath = argValue('--json');
  if (jsonPath) writeFileSync(jsonPath, JSON.stringify(results, null, 1));
  if (!QUICK && !ONLY) writeReport(results, table, machine);
  else log('a --quick or --only run: docs/benchmarks.md left as it is');
  if (urlChecks.notFound > 0) {
    console.error(`bench: ${urlChecks.notFound} requests to handed-out URLs answered "Session not found":\n${urlChecks.notFoundUrls.join('\n')}`);
    process.exitCode = 1;
  }
}

// ---------------------------------------------------------------------------
// 1, 3, 4 (container): the local provider, real preview containers, real Vite
// ---------------------------------------------------------------------------

async function localSection(databaseUrl: string, queuePrefix: string): Promise<NonNullable<Results['local']>> {
  log('1. local provider + Vite: starting api, provisioner, cleanup');
  // The provisioner takes all 20 sessions of a wave at once (the default is 10 a process).
  const sys = await startBenchSystem({ databaseUrl, queuePrefix, env: { MACHINE_PROVIDER: 'local', PROVISION_CONCURRENCY: String(SIZE.wave) } });
  undo.push(() => sys.stop());
  try {
    const run = () => runSession(sys.baseUrl, { fetchUrl: true, timeoutMs: 120_000 });
    log('   warm-up session (not counted)');
    await retire(sys, [(await run()).sessionId]);

    log(`   ${SIZE.seq} sessions one after another`);
    const seq: SessionRun[] = [];
    const containerCpuMs: number[] = [];
    for (let i = 0; i < SIZE.seq; i++) {
      const r = await run();
      seq.push(r);
      // CPU the machine spent from its spawn to here (it is idle once it is ready).
      const pid = (await sys.machines.processes()).find((p) => p.sessionId === r.sessionId)?.pid;
      if (pid) containerCpuMs.push(treeCpuMs(pid));
      log(`     ${i + 1}/${SIZE.seq}: ready ${r.readyMs.toFixed(0)} ms, first 200 ${r.firstOkMs?.toFixed(0)} ms, container CPU ${containerCpuMs.at(-1)} ms`);
      // The first one stays up for the routing and memory measurements; the others go before the next starts.
      if (i > 0) await retire(sys, [r.sessionId]);
    }

    const target = seq[0];
    const machine = (await sys.machines.processes()).find((p) => p.sessionId === target.sessionId);
    if (!machine) throw new Error(`the machine of session ${target.sessionId} is gone`);
    const containerIdle = treeRss(machine.pid);
    const routedUrl = `${target.previewUrl}src/App.jsx`;
    // The container answers its own preview's Host only (the first label, whatever the port).
    const previewHost = new URL(routedUrl).hostname;
    // The hop in between, for the analysis: the container's own address (its proxy, then Vite), no edge, asked on the preview's origin.
    const machineUrl = (await sys.machines.findBySession(target.sessionId))?.url;
    if (!machineUrl) throw new Error(`the machine of session ${target.sessionId} is gone`);
    const containerUrl = `${machineUrl}/src/App.jsx`;
    // Straight from Vite: a dev server of its own over the same files (the template's), nothing in front.
    const directVite = await startDirectVite(reactTemplateFiles());
    undo.push(() => directVite.stop());
    const directUrl = `${directVite.url}src/App.jsx`;
    const containerTree = () => processTree(machine.pid);
    const hops: Array<{ url: string; host?: string; groups: Record<string, () => number[]> }> = [
      { url: routedUrl, groups: { api: () => [sys.pids.api], container: containerTree } },
      { url: directUrl, groups: { vite: () => [directVite.pid] } },
      { url: containerUrl, host: previewHost, groups: { container: containerTree } },
    ];
    let routing: NonNullable<Results['local']>['routing'];
    try {
      for (const { url, host } of hops) {
        const res = await openHttp(url, host ? { headers: { host } } : {});
        const body = await readText(res);
        if (url === routedUrl) countUrlAnswer(url, res.statusCode ?? 0, body);
        if (res.statusCode !== 200) throw new Error(`${url} answered ${res.statusCode}: ${body.slice(0, 200)}`);
      }
      log(`3. routing: autocannon, ${SIZE.routeS} s × 10 connections each, routed ${routedUrl} and direct ${directUrl}`);
      for (const { url, host } of hops) await load(url, { connections: 10, durationS: SIZE.warmS, host });
      // CPU per request of each process on the path (autocannon is this process).
      const measure = async ({ url, host, groups }: (typeof hops)[number]) => {
        const meter = cpuMeter({ ...groups, autocannon: () => [process.pid] });
        const result = await load(url, { connections: 10, durationS: SIZE.routeS, host });
        const cpu = meter.stop();
        const perRequestUs = Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, (v * 1000) / Math.max(1, result.requests)]));
        return { ...result, cpuUsPerRequest: perRequestUs };
      };
      const [routed, direct, viaContainer] = [await measure(hops[0]), await measure(hops[1]), await measure(hops[2])];
      routing = { routed, direct, viaContainer, module: 'src/App.jsx' };
    } finally {
      await directVite.stop();
    }
    const { routed, direct } = routing;
    urlChecks.requests += routed.requests;
    urlChecks.non200 += routed.non2xx;
    log(`   routed ${routed.rps.toFixed(0)} req/s p99 ${routed.p99} ms; direct ${direct.rps.toFixed(0)} req/s p99 ${direct.p99} ms`);
    const containerLoaded = treeRss(machine.pid);
    await retire(sys, [target.sessionId]);

    const waves: SessionRun[] = [];
    for (let w = 0; w < SIZE.waves; w++) {
      log(`   wave ${w + 1}/${SIZE.waves}: ${SIZE.wave} sessions at once`);
      const wave = await Promise.all(Array.from({ length: SIZE.wave }, run));
      waves.push(...wave);
      log(`     ready p50 ${median(wave.map((r) => r.readyMs)).toFixed(0)} ms, max ${Math.max(...wave.map((r) => r.readyMs)).toFixed(0)} ms`);
      await retire(sys, wave.map((r) => r.sessionId));
    }
    return {
      seq,
      waves,
      routing,
      container: { idle: containerIdle, loaded: containerLoaded, cpuMs: containerCpuMs },
    };
  } finally {
    await sys.stop();
  }
}

// ---------------------------------------------------------------------------
// 3 (page load): a ~100-module app in Chromium, through the edge and straight from Vite
// ---------------------------------------------------------------------------

async function pageLoadSection(databaseUrl: string, queuePrefix: string): Promise<NonNullable<Results['pageLoad']>> {
  log(`3. page load: starting api, provisioner, cleanup; the ${PAGE_LOAD_FIXTURE} fixture in a session and in a Vite dev server of its own`);
  const sys = await startBenchSystem({ databaseUrl, queuePrefix, env: { MACHINE_PROVIDER: 'local' } });
  undo.push(() => sys.stop());
  try {
    const files = await fixtureProjectFiles(PAGE_LOAD_FIXTURE);
    const projectId = await uploadProject(sys.baseUrl, `bench ${PAGE_LOAD_FIXTURE}`, 'react', files);
    const session = await runSession(sys.baseUrl, { fetchUrl: true, timeoutMs: 120_000, projectId });
    log(`   session ${session.sessionId} ready in ${session.readyMs.toFixed(0)} ms at ${session.previewUrl}`);
    const direct = await startDirectVite(files);
    undo.push(() => direct.stop());
    try {
      log(`   ${SIZE.pageLoads} loads each after ${SIZE.pageWarmUps} warm-ups, routed ${session.previewUrl} and direct ${direct.url}`);
      return await measurePageLoads({
        routedUrl: session.previewUrl,
        directUrl: direct.url,
        loads: SIZE.pageLoads,
        warmUps: SIZE.pageWarmUps,
        modules: componentModulesOf(files),
        onRoutedDocument: (status, body) => countUrlAnswer(session.previewUrl, status, body),
        log,
      });
    } finally {
      await direct.stop();
      await retire(sys, [session.sessionId]);
    }
  } finally {
    await sys.stop();
  }
}

/** Stops the sessions (DELETE, as a user would) and waits until cleanup has destroyed their machines. */
async function retire(sys: BenchSystem, sessionIds: string[]): Promise<void> {
  await stopSessions(sys.baseUrl, sessionIds);
  const deadline = Date.now() + 60_000;
  const ids = new Set(sessionIds);
  while (Date.now() < deadline) {
    const left = (await sys.machines.processes()).filter((p) => ids.has(p.sessionId));
    if (left.length === 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  log(`   ${sessionIds.length} machines were not destroyed by cleanup within 60 s; destroying them`);
  for (const sessionId of sessionIds) await sys.machines.destroy(`local-${sessionId}`);
}

// ---------------------------------------------------------------------------
// 9: the warm pool, sized for a wave, same Vite and local provider as section 1
// ---------------------------------------------------------------------------

async function poolSection(databaseUrl: string, queuePrefix: string): Promise<NonNullable<Results['pool']>> {
  const size = SIZE.wave;
  log(`9. warm pool: starting the system with WARM_POOL=react:${size}-${size}`);
  const sys = await startBenchSystem({
    databaseUrl,
    queuePrefix,
    env: {
      MACHINE_PROVIDER: 'local',
      PROVISION_CONCURRENCY: String(size),
      WARM_POOL: `react:${size}-${size}`,
      POOL_REFILL_EVERY_MS: '1000',
      MACHINE_BUDGET: String(size * 3),
      // Sized for the burst, as the pool is: a wave finds its database connections open.
      DATABASE_POOL_MIN: '10',
    },
  });
  undo.push(() => sys.stop());
  const redis = new Redis(sys.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
  const warm = new WarmPool(redis, queuePrefix);
  const fill = async () => {
    const started = Date.now();
    while ((await warm.size({ templateType: 'react', tier: 'free' })) < size) {
      if (Date.now() - started > 300_000) throw new Error(`the pool did not reach ${size} machines in 300 s`);
      await new Promise((r) => setTimeout(r, 250));
    }
    const fillMs = Date.now() - started;
    await waitQuiet();
    return fillMs;
  };
  /**
   * A pool is filled ahead of the sessions it serves: wait until its machines are
   * idle (their start-up, and V8's memory-reducing collections some seconds
   * later, are over: two seconds in a row under 1 ms of CPU a machine) so the
   * wave is timed against a pool at rest.
   */
  const waitQuiet = async () => {
    const until = Date.now() + 30_000;
    // Measured here: for ~10 s after the pool is full its machines still use 100-300 ms of CPU a second
    // (V8's memory reducer), with quieter seconds between; at rest, 0-2 ms a second in all.
    let quietSeconds = 0;
    while (Date.now() < until) {
      const pids = (await sys.machines.processes()).flatMap((p) => processTree(p.pid));
      const meter = cpuMeter({ machines: () => pids });
      await new Promise((r) => setTimeout(r, 1000));
      quietSeconds = meter.stop().machines < size ? quietSeconds + 1 : 0;
      if (quietSeconds === 2) return;
    }
    log('   the pool machines did not settle within 30 s; timing anyway');
  };
  try {
    const fillMs = await fill();
    log(`   pool full in ${fillMs} ms`);
    // Not counted: a first wave through the services' code paths. A service in use has its code
    // compiled and optimized by V8; one just started runs it cold at first (its figures are reported apart).
    const warmUp = await Promise.all(Array.from({ length: size }, () => runSession(sys.baseUrl, { fetchUrl: true, timeoutMs: 120_000 })));
    await stopSessions(sys.baseUrl, warmUp.map((r) => r.sessionId));
    const firstWave = warmUp.map((r) => r.readyMs);
    log(`   warm-up wave (not counted): ready p50 ${median(firstWave).toFixed(0)} ms, max ${Math.max(...firstWave).toFixed(0)} ms; refilled in ${await fill()} ms`);
    const waves: SessionRun[] = [];
    const cpuMs: Array<Record<string, number>> = [];
    for (let w = 0; w < SIZE.waves; w++) {
      if (w > 0) log(`   refilled in ${await fill()} ms`);
      log(`   wave ${w + 1}/${SIZE.waves}: ${size} sessions at once`);
      const machinePids = (await sys.machines.processes()).flatMap((p) => processTree(p.pid));
      const meter = cpuMeter({
        api: () => [sys.pids.api],
        provisioner: () => [sys.pids.provisioner],
        cleanup: () => [sys.pids.cleanup],
        machines: () => machinePids,
        redis: () => pidsByName(/^redis-server$/),
        postgres: () => pidsByName(/^postgres$/),
        'bench client': () => [process.pid],
      });
      const busyBefore = machineBusyMs();
      const wave = await Promise.all(Array.from({ length: size }, () => runSession(sys.baseUrl, { fetchUrl: true, timeoutMs: 120_000 })));
      const cpu = meter.stop();
      cpuMs.push({ ...cpu, 'whole machine': machineBusyMs() - busyBefore });
      waves.push(...wave);
      log(`     CPU ms: ${Object.entries(cpuMs[cpuMs.length - 1]).map(([k, v]) => `${k} ${v}`).join(', ')}`);
      log(`     ready p50 ${median(wave.map((r) => r.readyMs)).toFixed(0)} ms, max ${Math.max(...wave.map((r) => r.readyMs)).toFixed(0)} ms, pooled ${wave.filter((r) => r.pooled).length}/${size}`);
      await stopSessions(sys.baseUrl, wave.map((r) => r.sessionId));
    }
    return { waves, size, fillMs, cpuMs, firstWave };
  } finally {
    redis.disconnect();
    await sys.stop();
  }
}

// ---------------------------------------------------------------------------
// 2, 4 (services): the no-op provider
// ---------------------------------------------------------------------------

async function noopSection(databaseUrl: string, redisUrl: string, queuePrefix: string): Promise<NonNullable<Results['noop']>> {
  log('2. no-op provider: starting api, provisioner, cleanup');
  const sys = await startBenchSystem({
    databaseUrl,
    queuePrefix,
    env: {
      MACHINE_PROVIDER: 'noop',
      // 50 sessions in flight are 50 jobs at once (the default is 10 a process), all running their
      // steps at once: these sessions cost no machine, the throughput of the orchestration is measured.
      PROVISION_CONCURRENCY: String(SIZE.noopConc),
      PROVISION_TURNS: String(SIZE.noopConc),
      // No-op machines live in the provisioner's memory: cleanup's sweep (another process) would
      // see none of them and end every session as machine-gone. No sweep during the benchmark.
      CLEANUP_SWEEP_EVERY_MS: String(3_600_000),
    },
  });
  undo.push(() => sys.stop());
  const floor = createFloor({ databaseUrl, redisUrl, prefix: queuePrefix });
  undo.push(() => floor.close());
  const services = { api: sys.pids.api, provisioner: sys.pids.provisioner, cleanup: sys.pids.cleanup };
  const rss = () => Object.fromEntries(Object.entries(services).map(([name, pid]) => [name, rssOf(pid)])) as Record<keyof typeof services, number>;
  const meterGroups = {
    api: () => [sys.pids.api],
    provisioner: () => [sys.pids.provisioner],
    cleanup: () => [sys.pids.cleanup],
    redis: () => pidsByName(/^redis-server$/),
    postgres: () => pidsByName(/^postgres$/),
    'bench client': () => [process.pid],
  };
  try {
    await new Promise((r) => setTimeout(r, 2000));
    const rest = rss();
    log(`   at rest: ${JSON.stringify(rest)}`);

    log('   warm-up: 50 sessions (not counted), then stopped');
    const warm = await pool(50, 10, () => runSession(sys.baseUrl, { fetchUrl: false }));
    await stopSessions(sys.baseUrl, warm.map((r) => r.sessionId));
    await waitEnded(sys.baseUrl, warm.map((r) => r.sessionId));

    const half = Math.floor(SIZE.noopSeq / 2);
    log(`   concurrency 1: ${SIZE.noopSeq} sessions (memory measured after the first ${half}), and the floor`);
    const seq = await timed(half, 1, sys, meterGroups);
    // Exactly the sessions above are live now.
    await pool(seq.runs.length, 10, (i) => checkUrl(seq.runs[i].previewUrl));
    const live = rss();
    const liveCount = seq.runs.length;
    log(`   with ${liveCount} live sessions: ${JSON.stringify(live)}`);
    const floorSeq = await floor.run(SIZE.noopSeq, 1);
    const seq2 = await timed(SIZE.noopSeq - half, 1, sys, meterGroups);

    const concRuns: Timed[] = [];
    const floorConc: number[] = [];
    const floorCpu: Record<string, number> = {};
    for (let i = 0; i < SIZE.noopRuns; i++) {
      log(`   concurrency ${SIZE.noopConc}: run ${i + 1}/${SIZE.noopRuns}, ${SIZE.noopRun} sessions, then the floor`);
      const r = await timed(SIZE.noopRun, SIZE.noopConc, sys, meterGroups);
      concRuns.push(r);
      log(`     ${r.rate.toFixed(0)} sessions/s, p50 ${median(r.runs.map((x) => x.readyMs)).toFixed(1)} ms`);
      const floorMeter = cpuMeter({ 'floor client': () => [process.pid], redis: meterGroups.redis, postgres: meterGroups.postgres });
      floorConc.push(...(await floor.run(SIZE.noopRun, SIZE.noopConc)));
      const used = floorMeter.stop();
      for (const [k, v] of Object.entries(used)) floorCpu[k] = (floorCpu[k] ?? 0) + v / (SIZE.noopRun * SIZE.noopRuns);
    }
    // Every URL handed out above, once, at the concurrency of the run.
    const handedOut = [...seq2.runs, ...concRuns.flatMap((r) => r.runs)].map((r) => r.previewUrl);
    await pool(handedOut.length, SIZE.noopConc, (i) => checkUrl(handedOut[i]));

    return {
      rest,
      live,
      liveCount,
      seq: { runs: [...seq.runs, ...seq2.runs], rate: median([seq.rate, seq2.rate]), cpu: mergeCpu([seq, seq2]) },
      conc: { runs: concRuns.flatMap((r) => r.runs), rates: concRuns.map((r) => r.rate), cpu: mergeCpu(concRuns), other: concRuns.reduce((s, r) => s + r.otherMs, 0) / concRuns.reduce((s, r) => s + r.wallMs, 0) },
      floorSeq,
      floorConc,
      floorCpu,
      floorCounts: FLOOR_COUNTS,
      concurrency: SIZE.noopConc,
    };
  } finally {
    await floor.close();
    await sys.stop();
  }
}

interface Timed {
  runs: SessionRun[];
  rate: number;
  wallMs: number;
  /** CPU ms of each process group over the run. */
  cpu: Record<string, number>;
  /** CPU ms the machine spent on processes outside the groups (other work on this machine). */
  otherMs: number;
}

async function timed(count: number, concurrency: number, sys: BenchSystem, groups: Record<string, () => number[]>): Promise<Timed> {
  const busyBefore = machineBusyMs();
  const meter = cpuMeter(groups);
  const t0 = Date.now();
  const runs = await pool(count, concurrency, () => runSession(sys.baseUrl, { fetchUrl: false }));
  const wallMs = Date.now() - t0;
  const cpu = meter.stop();
  const busy = machineBusyMs() - busyBefore;
  const ours = Object.values(cpu).reduce((a, b) => a + b, 0);
  return { runs, rate: (count / wallMs) * 1000, wallMs, cpu, otherMs: Math.max(0, busy - ours) };
}

/** CPU ms per session of each group over several runs. */
function mergeCpu(runs: Timed[]): Record<string, number> {
  const sessions = runs.reduce((s, r) => s + r.runs.length, 0);
  const merged: Record<string, number> = {};
  for (const r of runs) for (const [k, v] of Object.entries(r.cpu)) merged[k] = (merged[k] ?? 0) + v;
  return Object.fromEntries(Object.entries(merged).map(([k, v]) => [k, v / sessions]));
}

// ---------------------------------------------------------------------------

async function deleteKeys(redisUrl: string, prefix: string): Promise<number> {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 2 });
  try {
    return await deleteKeysWithPrefix(redis, prefix);
  } finally {
    redis.disconnect();
  }
}

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

main().catch((err) => {
  console.error(`bench: ${err instanceof Error ? err.stack : String(err)}`);
  process.exit(1);
});
