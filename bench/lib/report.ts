import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { SessionRun } from './client';
import type { DependencyRuns } from './dependencies';
import { PAGE_LOAD_FIXTURE, type PageLoad, type PageLoadRuns } from './page-load';
import type { LoadResult } from './routing';
import { STEPS } from './client';
import { mark, mb, median, ms, percentile, summarize } from './stats';

/** Everything one `npm run bench` measured. */
export interface Results {
  startedAt: string;
  quick: boolean;
  cores: number;
  size: Record<string, number>;
  loadBefore: number;
  loadAfter?: number;
  seconds?: number;
  local?: {
    seq: SessionRun[];
    waves: SessionRun[];
    /** `direct`: a Vite dev server of its own over the same files, nothing in front. */
    routing: { routed: Measured; direct: Measured; viaContainer: Measured; module: string };
    container: { idle: { bytes: number; processes: number }; loaded: { bytes: number; processes: number }; cpuMs: number[] };
  };
  noop?: {
    rest: Record<'api' | 'provisioner' | 'cleanup', number>;
    live: Record<'api' | 'provisioner' | 'cleanup', number>;
    liveCount: number;
    seq: { runs: SessionRun[]; rate: number; cpu: Record<string, number> };
    conc: { runs: SessionRun[]; rates: number[]; cpu: Record<string, number>; other: number };
    floorSeq: number[];
    floorConc: number[];
    floorCpu: Record<string, number>;
    floorCounts: { sql: number; redis: number };
    concurrency: number;
  };
  /** The ~100-module fixture loaded in Chromium, through the edge and straight from Vite. */
  pageLoad?: PageLoadRuns;
  /** Sessions from a warm pool sized for the wave, beside the cold path of the same run. */
  pool?: {
    waves: SessionRun[];
    size: number;
    fillMs: number;
    /** CPU ms each group used during each wave. */
    cpuMs: Array<Record<string, number>>;
    /** POST → ready of the warm-up wave (not counted): the services' code not yet optimized by V8. */
    firstWave?: number[];
  };
  /** A generated app with its own dependencies, installed from the local test registry, beside the React template. */
  deps?: DependencyRuns;
  urlChecks?: { requests: number; notFound: number; non200: number };
}

/** A target: its text in the table, and whether a figure meets it (a figure that is not a number does not). */
interface Target {
  text: string;
  met: (value: number) => boolean;
}
const atMost = (limit: number, text: string): Target => ({ text, met: (value) => value <= limit });
const atLeast = (limit: number, text: string): Target => ({ text, met: (value) => value >= limit });

/** Every target, on the row of its figure. */
export const TARGETS = {
  coldReadyP50: atMost(700, 'p50 ≤ 700 ms'),
  localWaveReadyP50: atMost(6000, 'p50 ≤ 6 s'),
  machineCpuP50: atMost(500, 'p50 ≤ 0.5 s'),
  routedShare: atLeast(0.5, '≥ 50 %'),
  pageLoadOverDirect: atMost(0.15, '≤ +15 %'),
  machineRss: atMost(150 * 2 ** 20, '≤ 150 MB'),
  sessionsPerSecond: atLeast(300, '≥ 300 /s'),
  overheadSequentialP50: atMost(15, '≤ 15 ms'),
  overheadConcurrentP50: atMost(50, '≤ 50 ms'),
  poolWaveReadyP50: atMost(200, 'p50 ≤ 200 ms'),
  sessionNotFound: atMost(0, '0'),
  /** A cached dependency set's ready p50 over the template's cold p50. */
  cachedOverTemplateMs: atMost(300, '≤ template + 300 ms'),
  pooledDependenciesP50: atMost(400, 'p50 ≤ 400 ms'),
} satisfies Record<string, Target>;
export type TargetName = keyof typeof TARGETS;

/**
 * Why a target is missed, where the run's figures cannot say it: written under
 * the table beside the floor each row computes from the run (see `judged`).
 */
export const MISSED_NOTES: Partial<Record<TargetName, string>> = {
  machineRss:
    'A machine is one Node process running Vite: Node\'s own binary mapped (about 42 MB), V8\'s heap (about 50 to 75 MB, 36 MB of it live after a full collection: Vite\'s code and module graph, the pre-bundled React\'s source), es-module-lexer\'s wasm memory (16 MB, grown to the largest module it parsed), the rolldown binding (about 11 MB); under load more of V8\'s heap is garbage not yet collected. `--optimize-for-size` takes 40 MB off and costs 0.3 s more CPU a start.',
  machineCpuP50:
    'Profiled (`--cpu-prof`, docs below): Vite\'s ES modules are compiled at every start (about 0.3 s; Node 20 keeps no compiled code of ES modules between processes), then Vite\'s server and plugins are set up (about 0.2 s), the first page is transformed (about 0.3 s with its garbage collection), and the machine itself starts (about 0.1 s). What would move it: a compile cache (Node 22\'s `module.enableCompileCache`), or the warm pool, whose claimed machine spends some 40 ms.',
  coldReadyP50: 'The machine\'s start is the floor of a cold session: a pooled one (9) is ready in a few hundred milliseconds.',
  localWaveReadyP50: 'What would move it is the CPU of one machine\'s start (the row below).',
  routedShare:
    'The edge is one Node HTTP proxy hop in the api process (its CPU a request is on the row above); straight Vite has no hop. With the edge at its measured cost, routed reaches at most the share the floor gives.',
};

type Measured = LoadResult & { cpuUsPerRequest: Record<string, number> };

const cpuUs = (m: Measured) =>
  Object.entries(m.cpuUsPerRequest)
    .map(([k, v]) => `${k} ${v.toFixed(0)}`)
    .join(', ');

interface Row {
  section: string;
  measure: string;
  result: string;
  target?: string;
  met?: boolean;
  /** For a missed target: the measured floor, or why. */
  note?: string;
}

const row = (section: string, measure: string, result: string): Row => ({ section, measure, result });

/** A row with a target, met or not by `value`; a missed one carries `floor` (from the run) and its MISSED_NOTES entry. */
function judged(section: string, measure: string, result: string, name: TargetName, value: number, floor?: string): Row {
  const target = TARGETS[name];
  const met = target.met(value);
  const note = met ? '' : [floor, MISSED_NOTES[name]].filter(Boolean).join(' ');
  return { section, measure, result, target: target.text, met, ...(note ? { note } : {}) };
}

const trio = (values: number[]) => {
  const s = summarize(values);
  return `${ms(s.p50)} / ${ms(s.p95)} / ${ms(s.p99)}`;
};

const signedPercent = (share: number) => `${share >= 0 ? '+' : ''}${(share * 100).toFixed(1)} %`;

export function renderTable(r: Results): string {
  const rows: Row[] = [];
  if (r.local) rows.push(...localRows(r, r.local));
  if (r.pageLoad) rows.push(...pageLoadRows(r.pageLoad));
  if (r.pool) rows.push(...poolRows(r, r.pool));
  if (r.noop) rows.push(...noopRows(r, r.noop));
  if (r.deps) rows.push(...dependencyRows(r.deps));
  if (r.urlChecks) {
    const u = r.urlChecks;
    rows.push(judged('5', 'requests to handed-out preview URLs that answered "Session not found"', `${u.notFound} of ${u.requests} (non-200 answers: ${u.non200})`, 'sessionNotFound', u.notFound));
  }
  rows.sort((a, b) => Number(a.section) - Number(b.section));
  const line = (cells: string[]) => `| ${cells.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`;
  const head = ['#', 'measure', 'result', 'target', 'met'];
  const table = [line(head), line(head.map(() => '---')), ...rows.map((x) => line([x.section, x.measure, x.result, x.target ?? '', x.met === undefined ? '' : mark(x.met)]))];
  const notes = rows.filter((x) => x.note).map((x) => `- **${x.section}** ${x.measure} (${x.target}): ${x.note}`);
  return notes.length === 0 ? table.join('\n') : [...table, '', 'Missed targets: the measured floor, or why', '', ...notes].join('\n');
}

function localRows(r: Results, local: NonNullable<Results['local']>): Row[] {
  const rows: Row[] = [];
  const { seq, waves, routing, container } = local;
  const waveN = waves.length;
  const ready = (runs: SessionRun[]) => runs.map((x) => x.readyMs);
  const firstOk = (runs: SessionRun[]) => runs.map((x) => x.firstOkMs ?? Number.NaN);
  const stepP50 = (runs: SessionRun[], step: (typeof STEPS)[number]) => percentile(runs.map((x) => x.steps[step] ?? Number.NaN), 50);
  const split = (runs: SessionRun[]) => `split p50: ${STEPS.map((step) => `${step} ${ms(stepP50(runs, step))}`).join(', ')}.`;
  const wave = r.size.wave;
  const cpu = container.cpuMs;
  const cpuP50 = percentile(cpu, 50);
  const waveCpuFloor = (wave * cpuP50) / cores(r);
  // Machines start in turns, so the median session waits for half the wave's machines.
  const waveFloor = `Floor: ${wave} machines × ${ms(cpuP50)} CPU each from spawn to ready on ${cores(r)} cores = ${ms(waveCpuFloor)} for the wave; started in turns, the median session's machine is ready after half of them, ${ms(waveCpuFloor / 2)}, with the services' own CPU on top.`;
  rows.push(judged('1', `local + Vite, 1 at a time (n=${seq.length}): POST → \`ready\` p50 / p95 / p99`, trio(ready(seq)), 'coldReadyP50', percentile(ready(seq), 50), split(seq)));
  rows.push(row('1', '… POST → first 200 from the preview URL', trio(firstOk(seq))));
  rows.push(judged('1', `local + Vite, ${wave} at once (n=${waveN}, ${waveN / wave} waves): POST → \`ready\``, trio(ready(waves)), 'localWaveReadyP50', percentile(ready(waves), 50), waveFloor));
  rows.push(row('1', '… POST → first 200 from the preview URL', trio(firstOk(waves))));
  const stepRow = (label: string, pick: (x: SessionRun) => number) => rows.push(row('1', `split: ${label} (1 at a time · ${wave} at once)`, `${trio(seq.map(pick))} · ${trio(waves.map(pick))}`));
  stepRow('queue wait (POST → first `started`)', (x) => x.queueWaitMs);
  const labels: Record<string, string> = {
    'ensure-project': 'ensure-project',
    'commit-session': 'commit-session (row committed)',
    'create-machine': 'create-machine (spawn until the container answers /health: machine start)',
    'verify-url': 'verify-url (until the URL serves the app through the edge: files, Vite start, first-page warm-up)',
    activate: 'activate',
  };
  for (const step of STEPS) stepRow(labels[step] ?? step, (x) => x.steps[step] ?? Number.NaN);
  rows.push(
    judged(
      '1',
      'CPU of one container from spawn to ready (process tree, 1 at a time) p50 / max',
      `${ms(cpuP50)} / ${ms(Math.max(...cpu))} → a wave of ${wave} needs ≥ ${ms(waveCpuFloor)} on ${cores(r)} cores`,
      'machineCpuP50',
      cpuP50,
    ),
  );
  const { routed, direct, viaContainer } = routing;
  rows.push(row('3', `routed: edge → the machine (Vite in its own server), \`${routing.module}\` (autocannon ${r.size.routeS} s × 10 conn.): req/s, p99; CPU µs/request`, `${routed.rps.toFixed(0)} req/s, p99 ${routed.p99} ms; ${cpuUs(routed)}`));
  rows.push(row('3', "direct: a Vite dev server of its own over the same files (the React template's), same module", `${direct.rps.toFixed(0)} req/s, p99 ${direct.p99} ms; ${cpuUs(direct)}`));
  rows.push(row('3', "(for the analysis) the machine's own address (Vite in its own server), no edge", `${viaContainer.rps.toFixed(0)} req/s, p99 ${viaContainer.p99} ms; ${cpuUs(viaContainer)}`));
  const share = routed.rps / direct.rps;
  const pathCpu = Object.values(routed.cpuUsPerRequest).reduce((a, b) => a + b, 0);
  const directCpu = Object.values(direct.cpuUsPerRequest).reduce((a, b) => a + b, 0);
  const shareFloor = `Routed, a request costs ${pathCpu.toFixed(0)} µs of CPU on the path (${cpuUs(routed)}), direct ${directCpu.toFixed(0)} µs: CPU-bound on ${cores(r)} shared cores, routed reaches at most about ${((100 * directCpu) / pathCpu).toFixed(0)} % of direct.`;
  rows.push(judged('3', 'routed / direct requests per second', `${(share * 100).toFixed(0)} %`, 'routedShare', share, shareFloor));
  rows.push(judged('4', `one preview container, React template, after its first page load (process tree: ${container.idle.processes})`, mb(container.idle.bytes), 'machineRss', container.idle.bytes));
  rows.push(judged('4', '… the same container after the routing load', mb(container.loaded.bytes), 'machineRss', container.loaded.bytes));
  return rows;
}

function pageLoadRows(p: PageLoadRuns): Row[] {
  const times = (loads: PageLoad[]) => loads.map((x) => x.ms);
  const pair = (loads: PageLoad[]) => `${ms(percentile(times(loads), 50))} / ${ms(percentile(times(loads), 95))}`;
  const routedP50 = percentile(times(p.routed), 50);
  const directP50 = percentile(times(p.direct), 50);
  const over = routedP50 / directP50 - 1;
  const requests = percentile(p.routed.map((x) => x.requests), 50);
  const difference = `${requests} requests a load, each through the edge and the container's proxy (Chromium sends up to 6 at once to one origin): routed − direct = ${ms(routedP50 - directP50)} at p50.`;
  return [
    row(
      '3',
      `page load of a React app of ${p.modules} component modules (\`${PAGE_LOAD_FIXTURE}\`) in Chromium, cache off, until its last module rendered (n=${p.routed.length} each, after ${p.warmUps} warm-ups): routed (the preview URL) p50 / p95`,
      pair(p.routed),
    ),
    row('3', '… direct: a Vite dev server of its own over the same files, p50 / p95', pair(p.direct)),
    judged('3', '… routed over direct, p50', signedPercent(over), 'pageLoadOverDirect', over, difference),
    row('3', '… requests of one page load, routed · direct (p50)', `${requests} · ${percentile(p.direct.map((x) => x.requests), 50)}`),
  ];
}

function poolRows(r: Results, pool: NonNullable<Results['pool']>): Row[] {
  const rows: Row[] = [];
  const { waves, size, fillMs } = pool;
  const ready = waves.map((x) => x.readyMs);
  const firstOkMs = waves.map((x) => x.firstOkMs ?? Number.NaN);
  const hits = waves.filter((x) => x.pooled).length;
  const perSession = (group: string) => pool.cpuMs.reduce((sum, wave) => sum + (wave[group] ?? 0), 0) / waves.length;
  const whole = pool.cpuMs.length ? perSession('whole machine') : Number.NaN;
  const waveCpu = (size * whole) / cores(r);
  const floor = Number.isFinite(whole)
    ? `Floor: ${size} sessions × ${whole.toFixed(1)} ms of whole-machine CPU on ${cores(r)} cores = ${ms(waveCpu)} for the wave; taking turns oldest first, the median session waits about half of it, ${ms(waveCpu / 2)}.`
    : undefined;
  rows.push(judged('9', `warm pool of ${size} React machines (filled in ${ms(fillMs)}), ${size} at once (n=${waves.length}): POST → \`ready\` p50 / p95 / p99`, trio(ready), 'poolWaveReadyP50', percentile(ready, 50), floor));
  rows.push(row('9', '… POST → first 200 from the preview URL', trio(firstOkMs)));
  if (pool.firstWave?.length) {
    rows.push(row('9', '… the warm-up wave before them, right after the services started (not counted): POST → `ready` p50 / p95 / p99', trio(pool.firstWave)));
  }
  rows.push(row('9', '… pool hit rate (sessions that got a pooled machine)', `${hits} / ${waves.length} (${((100 * hits) / Math.max(1, waves.length)).toFixed(0)} %)`));
  if (pool.cpuMs.length) {
    const groups = Object.keys(pool.cpuMs[0]).filter((g) => g !== 'whole machine');
    rows.push(
      row(
        '9',
        '… CPU ms per session during the waves (the claimed machines, the services, the servers, this client)',
        `${groups.map((g) => `${g} ${perSession(g).toFixed(1)}`).join(', ')}; whole machine ${whole.toFixed(1)} → a wave of ${size} needs ≥ ${ms(waveCpu)} of ${cores(r)} cores`,
      ),
    );
  }
  const p50Of = (pick: (x: SessionRun) => number) => ms(percentile(waves.map(pick), 50));
  rows.push(
    row(
      '9',
      '… split p50: queue wait / create-machine (claim + files) / verify-url',
      `${p50Of((x) => x.queueWaitMs)} / ${p50Of((x) => x.steps['create-machine'] ?? Number.NaN)} / ${p50Of((x) => x.steps['verify-url'] ?? Number.NaN)}`,
    ),
  );
  return rows;
}

function noopRows(r: Results, n: NonNullable<Results['noop']>): Row[] {
  const rows: Row[] = [];
  const seqReady = n.seq.runs.map((x) => x.readyMs);
  const concReady = n.conc.runs.map((x) => x.readyMs);
  const seqOver = percentile(seqReady, 50) - percentile(n.floorSeq, 50);
  const concOver = percentile(concReady, 50) - percentile(n.floorConc, 50);
  const rate = median(n.conc.rates);
  const floorLabel = `${n.floorCounts.sql} SQL + ${n.floorCounts.redis} Redis round trips, plain pg/ioredis`;
  const coreMs = 1000 * cores(r);
  const total = Object.values(n.conc.cpu).reduce((a, b) => a + b, 0);
  const cpu = Object.entries(n.conc.cpu)
    .map(([k, v]) => `${k} ${v.toFixed(1)}`)
    .join(', ');
  const rateFloor = `Measured CPU per session, ${total.toFixed(1)} ms (${cpu}) → at most ${(coreMs / total).toFixed(0)} /s on ${cores(r)} cores.`;
  // Little's law: with the cores busy, latency = sessions in flight / sessions a second.
  const overFloor = `CPU-bound with ${n.concurrency} in flight, a session takes at least ${n.concurrency} × ${total.toFixed(1)} ms of CPU / ${cores(r)} cores = ${ms((n.concurrency * total) / cores(r))}.`;
  rows.push(row('2', `no-op provider, 1 at a time (n=${n.seq.runs.length}): sessions/s`, `${n.seq.rate.toFixed(0)} /s`));
  rows.push(row('2', '… POST → `ready` p50 / p99', `${ms(percentile(seqReady, 50))} / ${ms(percentile(seqReady, 99))}`));
  rows.push(row('2', `… floor (${floorLabel}) p50 / p99`, `${ms(percentile(n.floorSeq, 50))} / ${ms(percentile(n.floorSeq, 99))}`));
  rows.push(judged('2', '… overhead = p50 − floor p50', ms(seqOver), 'overheadSequentialP50', seqOver));
  rows.push(
    judged(
      '2',
      `no-op provider, ${n.concurrency} at once (${n.conc.rates.length} runs × ${n.conc.runs.length / n.conc.rates.length}): sessions/s, median of runs`,
      `${rate.toFixed(0)} /s (runs: ${n.conc.rates.map((x) => x.toFixed(0)).join(', ')})`,
      'sessionsPerSecond',
      rate,
      rateFloor,
    ),
  );
  rows.push(row('2', '… POST → `ready` p50 / p99', `${ms(percentile(concReady, 50))} / ${ms(percentile(concReady, 99))}`));
  rows.push(row('2', `… floor, ${n.concurrency} at once, p50 / p99`, `${ms(percentile(n.floorConc, 50))} / ${ms(percentile(n.floorConc, 99))}`));
  rows.push(judged('2', `… overhead = p50 − floor p50, ${n.concurrency} at once`, ms(concOver), 'overheadConcurrentP50', concOver, overFloor));
  rows.push({
    ...row(
      '2',
      `… CPU ms per session, ${n.concurrency} at once (${cores(r)} cores = ${coreMs} ms/s; other processes on the machine used ${n.conc.other.toFixed(2)} cores meanwhile)`,
      `${cpu}; total ${total.toFixed(1)} ms → at most ${(coreMs / total).toFixed(0)} /s on ${cores(r)} cores`,
    ),
    target: `≤ ${(coreMs / 300).toFixed(1)} ms for 300 /s`,
  });
  const floorTotal = Object.values(n.floorCpu).reduce((a, b) => a + b, 0);
  rows.push(
    row(
      '2',
      `… CPU ms per session of the floor itself, ${n.concurrency} at once`,
      `${Object.entries(n.floorCpu)
        .map(([k, v]) => `${k} ${v.toFixed(1)}`)
        .join(', ')}; total ${floorTotal.toFixed(1)} ms → at most ${(coreMs / floorTotal).toFixed(0)} /s on ${cores(r)} cores`,
    ),
  );
  for (const service of ['api', 'provisioner', 'cleanup'] as const) {
    rows.push(row('4', `${service} RSS: at rest → with ${n.liveCount} live no-op sessions`, `${mb(n.rest[service])} → ${mb(n.live[service])}`));
  }
  return rows;
}

function dependencyRows(deps: DependencyRuns): Row[] {
  const { uncached, cached, templateCold, pooled } = deps;
  const ready = (runs: SessionRun[]) => runs.map((x) => x.readyMs);
  const p50 = (runs: SessionRun[]) => percentile(ready(runs), 50);
  const pair = (runs: SessionRun[]) => `${ms(p50(runs))} / ${ms(percentile(ready(runs), 95))}`;
  const install = (runs: SessionRun[]) => ms(percentile(runs.map((x) => x.steps['install-dependencies'] ?? Number.NaN), 50));
  const over = p50(cached) - p50(templateCold);
  const claimed = pooled.filter((x) => x.pooled).length;
  return [
    judged('10', `React template, cold, 1 at a time (n=${templateCold.length}): POST → \`ready\` p50 / p95`, pair(templateCold), 'coldReadyP50', p50(templateCold)),
    row(
      '10',
      `generated app (React + TS, Tailwind 4, router, icons, store; 50 packages), dependencies uncached (n=${uncached.length}): POST → \`ready\` p50 / p95; install p50`,
      `${pair(uncached)}; install ${install(uncached)}`,
    ),
    judged('10', `… dependencies cached (n=${cached.length}): POST → \`ready\` p50 / p95; over the template's cold p50`, `${pair(cached)}; +${ms(over)}`, 'cachedOverTemplateMs', over),
    judged(
      '10',
      `… from a warm pool holding its dependency set (DEPENDENCY_POOL=1x1, n=${pooled.length}, ${claimed} claimed a pooled machine): POST → \`ready\` p50 / p95`,
      pair(pooled),
      'pooledDependenciesP50',
      // A session that did not claim a pooled machine is not the measure: the target is not met.
      claimed === pooled.length ? p50(pooled) : Number.NaN,
    ),
  ];
}

const cores = (r: Results) => Math.max(1, r.cores);

export function writeReport(r: Results, table: string, machine: string): void {
  const dir = resolve(__dirname, '../../docs');
  mkdirSync(dir, { recursive: true });
  const text = [
    '# Benchmarks',
    '',
    `Written by \`npm run bench\` on ${r.startedAt}, on ${machine}; load average ${r.loadBefore.toFixed(2)} before and ${(r.loadAfter ?? 0).toFixed(2)} after (other work on the machine shares its cores), ${(r.seconds ?? 0).toFixed(0)} s in all.`,
    'Real Postgres, Redis and Vite; api, provisioner and cleanup as real processes (the entry points of `npm start`), on a database and queue prefix of the run\'s own.',
    '',
    table,
    '',
    '## What each figure is',
    '',
    '- Latencies are percentiles (nearest rank) over every session of a part; p50 / p95 / p99. Sessions per second is the median over runs. Every ratio and every floor comes from the same run.',
    '- **1**: `POST /v1/sessions` to the `ready` event as the client receives it over SSE (the POST\'s own answer, with `Accept: text/event-stream`), and to the first 200 of a `GET` of the preview URL sent after `ready`. A warm-up session runs first and is not counted. One session at a time: each is stopped (`DELETE`) and its machine destroyed before the next; 20 at once: waves of 20, the provisioner taking all 20 (`PROVISION_CONCURRENCY=20`). The split is the steps\' own `ms` from the `progress` events, as they are, not re-cut: create-machine ends when the container\'s `/health` answers at all (the container listens before it loads anything), so it is the machine (process) start; the file fetch, Vite\'s start and its first-page warm-up fall in verify-url, which polls the preview URL through the edge until it serves the app. "Vite ready" is therefore inside verify-url. Queue wait is the first `started` event\'s time minus the POST\'s. The CPU of one container is its process tree\'s user+system time right after its first page load.',
    '- **2**: `MACHINE_PROVIDER=noop` (benchmarks only: one tiny HTTP server in the provisioner answers every machine\'s preview path with a page that loads `@vite/client`, so verification still goes through the real edge). With `PROVISION_CONCURRENCY=50` and `PROVISION_TURNS=50`: every session in flight runs its steps at once. Everything else is the real path. The floor is the same Redis round trips and SQL statements that path issues (listed in `bench/lib/floor.ts`), in the same order, timed with plain `pg` and `ioredis` clients against the same servers while the system is idle; overhead = p50 − floor p50. CPU per session is `/proc/<pid>/stat` user+system time of each process over the runs divided by the sessions (Postgres: all its processes; Redis: the server; both are shared with anything else using them meanwhile, so they are upper bounds, and "other processes" is the rest of the machine\'s busy time), the benchmark\'s own client included since it shares the cores. The cleanup sweep is off in this part (no-op machines live in the provisioner\'s memory, which cleanup cannot see).',
    '- **3**: autocannon, 10 connections, same duration, the same module (`/src/App.jsx`) of one live React session: routed, through the edge (`http://<id>.localhost:<api>/…`, connected on 127.0.0.1); direct, straight from Vite: a dev server of its own (`bench/lib/vite-server.ts`, in a process of its own) over a temporary copy of the same files (the React template\'s) with `node_modules` linked to the service\'s, the template\'s plugin (`@vitejs/plugin-react`) and pre-bundled dependencies, nothing in front. A short warm-up of each first; req/s is the mean of the per-second samples; CPU µs per request of each process on the path (the container: its whole process tree). **Page load**: the `hundred-modules` fixture (`libs/testing/fixtures/projects`: `main.jsx` → `App` → 8 sections → 9 widgets each → `ui/` components → `lib/`, 9 stylesheets; only React imported, no package.json and no config, so it runs on the service\'s node_modules as the React template does) uploaded as a React project, one session of it, and the same files in a direct Vite dev server as above. Headless Chromium (`/usr/bin/chromium`, playwright-core) loads each URL in a browser context of its own per load (empty cache, no open connection); the time is from navigation start to the `app-rendered` mark the fixture\'s `App` sets in its effect, which React runs once every component has rendered (the page\'s own clock). Every load must render every component module (distinct `data-module` values) and fail no request. Warm-ups of each first (not counted: Vite transforms each module at its first request), then routed and direct take turns, which goes first alternating. Requests: the document and the resource-timing entries started before the mark.',
    '- **4**: VmRSS from `/proc/<pid>/status`. Services: the api, provisioner and cleanup processes, at rest (started, idle) and with that many no-op sessions active. Preview container: the container process and all its descendants.',
    '- **9**: a system started with `WARM_POOL=react:20-20`, `PROVISION_CONCURRENCY=20` and `DATABASE_POOL_MIN=10` (each service keeps 10 database connections open), otherwise as in 1. Each session is one request: `POST /v1/sessions` with `Accept: text/event-stream`, answered with its events. The pool is filled, a warm-up wave of 20 sessions runs (not counted: a service in use has its code optimized by V8, one just started has not; its figures are shown apart) and the pool is filled again; before each wave the benchmark waits until the pooled machines are at rest, two seconds in a row under 1 ms of CPU a machine (their start-up, and V8\'s memory-reducing collections some 10 s later, are over), as a pool filled ahead of its sessions is. Then waves of 20 sessions at once, each session\'s URL fetched after `ready`. CPU per session: each group\'s CPU (`/proc/<pid>/task/*/schedstat`) over the waves divided by the sessions; "machines" are the pooled machines that the wave claims, "whole machine" is every process on the machine (`/proc/stat`), refills included. On 2 cores the whole-machine CPU of a wave bounds its time from below. The provisioner runs its sessions\' steps in turns (`PROVISION_TURNS`, by default the CPU count: 2 here), oldest first, so the median session waits for about half the wave\'s CPU rather than nearly all of it. Wave medians of the same code vary from about 210 to 330 ms from run to run (whole-machine CPU per session 37 to 50 ms). `bench/pool-cpu.ts` measures one session at a time. Since `ready` means the app compiled, verify-url asks for the page\'s modules (the entry, its static imports and styles) through the edge before `ready`, so the machine transforms them then rather than at the browser\'s first load: that work is in the machines\', api\'s and provisioner\'s CPU per session and in the time to `ready`.',
    '- **10**: the generated app of `libs/testing/fixtures/projects/generated-app` (its own package.json with caret ranges, vite.config.ts with plugin-react and Tailwind 4), uploaded once, installed from the local test registry (Verdaccio over the prepared storage, no network). Uncached: the dependency cache folder (npm\'s own cache in it too) is emptied before each run; cached: the set installed. Each beside the React template\'s cold sessions in the same system (a warm-up session first, not counted), one at a time, each stopped before the next.',
    '- **5**: every answer of a handed-out URL the benchmark fetched (first loads, one GET of every no-op session\'s URL, the routed load test); a body with "Session not found" counts.',
    '',
    ...WHERE_THE_TIME_GOES,
  ].join('\n');
  writeFileSync(join(dir, 'benchmarks.md'), text);
}

/**
 * What profiles (`node --cpu-prof`, main thread, self time; the summaries are the
 * sums by package) and memory readings showed, before and after the machine, the
 * edge and the orchestration were made leaner. Measured by hand, not by the run:
 * kept here so the report carries them.
 */
const WHERE_THE_TIME_GOES = [
  '## Where the time and memory go',
  '',
  'Profiled on this machine on 2026-12-04 with `node --cpu-prof` (main thread, self time, summed by package), one machine at a time on the React template, spawned as the provider spawns it but outside the sandbox.',
  '',
  '- **A machine\'s start, before**: 1.35–1.43 s of CPU from spawn to ready, 296–303 MB resident after the first page load. Ready in about 1.4 s of wall time: 0.52 s until it listened, 1.43 s for Vite. Main thread: loading the service\'s libraries through their index files (zod building the schemas 90 ms, semver 76 ms and yaml 19 ms for dependency-set code the machine never runs, pino 45 ms, CommonJS resolution 87 ms), Vite\'s ES modules compiled (76 ms in `compileSourceTextModule`, 0.2 s in all), Vite 292 ms, the dependency optimizer (rolldown) bundling React afresh 164 ms followed by 290 ms of garbage collection, the page\'s first transforms. Every request then took a second HTTP hop, the machine\'s proxy to Vite on loopback.',
  '- **A machine\'s start, after**: 0.94–1.07 s of CPU unsandboxed on a quiet machine (1.09–1.30 s in the sandbox in the benchmark runs of that day), 181–217 MB resident unsandboxed, and 100–160 MB for the sandboxed machine in those runs. The machine is one bundled file (only the code it uses: its require of packages at start is pino and eventsource-parser, 74 ms with zod bundled), Vite in middleware mode in its own server (no second hop), React pre-bundled once per dependency set and copied in (no rolldown bundling, about 100 MB less resident), the service\'s Vite loaded while the files are fetched. What remains: Vite\'s ES modules compiled at every start (about 0.3 s; Node 20 has no compile cache for them), Vite\'s server and plugin set-up (about 0.2 s), the first page\'s transforms (oxc through rolldown\'s binding) with about 0.25 s of garbage collection, the machine\'s own start (about 0.1 s). Memory: V8\'s heap about 75 MB (36 MB live after a full collection), Node\'s binary about 42 MB, es-module-lexer\'s wasm memory 16 MB, the rolldown binding 11 MB.',
  '- **A module through the route**: before, the api spent 311–445 µs of CPU a routed request (Express, the api\'s middleware, http-proxy-middleware inside Express) and the machine\'s proxy another hop. After, the edge is on the api\'s HTTP server ahead of Express and Nest (117–212 µs a request, measured alone against a stand-in machine); the machine answers with Vite itself, where a third of its own CPU a request was the lockdown\'s `realpath` of the file (now an `lstat` per part below the work folder). The edge\'s profile is now mostly Node\'s HTTP code and socket writes (`writev`, `writeLatin1String`); http-proxy-middleware costs about 8 µs a request over http-proxy\'s own `web()`. One proxy hop in Node costs about 90 µs of CPU a request on this machine at the least, against Vite\'s 60: that is the floor of the routed share.',
  '',
];
