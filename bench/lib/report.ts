import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { SessionRun } from './client';
import type { DependencyRuns } from './dependencies';
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
    /** `direct`: none when the machine is sandboxed (Vite listens in the machine's own network). */
    routing: { routed: Measured; direct?: Measured; viaContainer: Measured; module: string };
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

export const TARGETS = {
  poolReadyP50: 300,
  poolReadyP99: 800,
  readyP50: 1500,
  readyP99: 3000,
  overheadP50: 15,
  sessionsPerSecond: 300,
  routedShare: 0.85,
  containerBytes: 150 * 2 ** 20,
  /** A cached dependency set's ready p50 over the template's cold p50. */
  cachedOverTemplateMs: 300,
  pooledSetMs: 400,
  pooledDependenciesP50: 400,
};

type Measured = LoadResult & { cpuUsPerRequest: Record<string, number> };

const cpuUs = (m: Measured) =>
  Object.entries(m.cpuUsPerRequest)
    .map(([k, v]) => `${k} ${v.toFixed(0)}`)
    .join(', ');

type Row = [section: string, measure: string, result: string, target: string, met: string];

const trio = (values: number[]) => {
  const s = summarize(values);
  return `${ms(s.p50)} / ${ms(s.p95)} / ${ms(s.p99)}`;
};

export function renderTable(r: Results): string {
  const rows: Row[] = [];
  const cpus = r.cores;
  if (r.local) {
    const { seq, waves, routing, container } = r.local;
    const waveN = waves.length;
    const ready = (runs: SessionRun[]) => runs.map((x) => x.readyMs);
    const firstOk = (runs: SessionRun[]) => runs.map((x) => x.firstOkMs ?? Number.NaN);
    const meets = (values: number[]) => percentile(values, 50) <= TARGETS.readyP50 && percentile(values, 99) <= TARGETS.readyP99;
    rows.push(['1', `local + Vite, 1 at a time (n=${seq.length}): POST → \`ready\` p50 / p95 / p99`, trio(ready(seq)), '', '']);
    rows.push(['1', '… POST → first 200 from the preview URL', trio(firstOk(seq)), '', '']);
    rows.push(['1', `local + Vite, 20 at once (n=${waveN}, ${waveN / 20} waves): POST → \`ready\``, trio(ready(waves)), 'p50 ≤ 1.5 s, p99 ≤ 3 s', mark(meets(ready(waves)))]);
    rows.push(['1', '… POST → first 200 from the preview URL', trio(firstOk(waves)), 'p50 ≤ 1.5 s, p99 ≤ 3 s', mark(meets(firstOk(waves)))]);
    const stepRow = (label: string, pick: (x: SessionRun) => number) =>
      rows.push(['1', `split: ${label} (1 at a time · 20 at once)`, `${trio(seq.map(pick))} · ${trio(waves.map(pick))}`, '', '']);
    stepRow('queue wait (POST → first `started`)', (x) => x.queueWaitMs);
    const labels: Record<string, string> = {
      'ensure-project': 'ensure-project',
      'commit-session': 'commit-session (row committed)',
      'create-machine': 'create-machine (spawn until the container answers /health: machine start)',
      'verify-url': 'verify-url (until the URL serves the app through the edge: files, Vite start, first-page warm-up)',
      activate: 'activate',
    };
    for (const step of STEPS) stepRow(labels[step] ?? step, (x) => x.steps[step] ?? Number.NaN);

    const cpu = container.cpuMs;
    rows.push([
      '1',
      'CPU of one container from spawn to ready (process tree, 1 at a time) p50 / max',
      `${ms(percentile(cpu, 50))} / ${ms(Math.max(...cpu))} → a wave of 20 needs ≥ ${ms((20 * percentile(cpu, 50)) / cpus)} on ${cpus} cores`,
      '',
      '',
    ]);
    const { routed, direct, viaContainer } = routing;
    rows.push(['3', `routed: edge → container proxy → Vite, \`${routing.module}\` (autocannon ${r.size.routeS} s × 10 conn.): req/s, p99; CPU µs/request`, `${routed.rps.toFixed(0)} req/s, p99 ${routed.p99} ms; ${cpuUs(routed)}`, '', '']);
    if (direct) rows.push(['3', 'direct: the Vite dev server, same module, same settings', `${direct.rps.toFixed(0)} req/s, p99 ${direct.p99} ms; ${cpuUs(direct)}`, '', '']);
    else rows.push(['3', 'direct: the Vite dev server', 'not measured: the machine is sandboxed, Vite listens in its own network', '', '']);
    rows.push(['3', "(for the analysis) the container's own address: container proxy → Vite, no edge", `${viaContainer.rps.toFixed(0)} req/s, p99 ${viaContainer.p99} ms; ${cpuUs(viaContainer)}`, '', '']);
    if (direct) {
      const share = routed.rps / direct.rps;
      rows.push(['3', 'routed / direct requests per second', `${(share * 100).toFixed(0)} %`, '≥ 85 %', mark(share >= TARGETS.routedShare)]);
    }
    rows.push([
      '4',
      `one preview container, React template, after its first page load (process tree: ${container.idle.processes})`,
      mb(container.idle.bytes),
      '≤ 150 MB',
      mark(container.idle.bytes <= TARGETS.containerBytes),
    ]);
    rows.push(['4', '… the same container after the routing load', mb(container.loaded.bytes), '≤ 150 MB', mark(container.loaded.bytes <= TARGETS.containerBytes)]);
  }
  if (r.pool) {
    const { waves, size, fillMs } = r.pool;
    const ready = waves.map((x) => x.readyMs);
    const firstOkMs = waves.map((x) => x.firstOkMs ?? Number.NaN);
    const hits = waves.filter((x) => x.pooled).length;
    const meets = (values: number[]) => percentile(values, 50) <= TARGETS.poolReadyP50 && percentile(values, 99) <= TARGETS.poolReadyP99;
    rows.push(['9', `warm pool of ${size} React machines (filled in ${ms(fillMs)}), ${size} at once (n=${waves.length}): POST → \`ready\` p50 / p95 / p99`, trio(ready), 'p50 ≤ 300 ms, p99 ≤ 800 ms', mark(meets(ready))]);
    rows.push(['9', '… POST → first 200 from the preview URL', trio(firstOkMs), '', '']);
    if (r.pool.firstWave?.length) {
      rows.push(['9', `… the warm-up wave before them, right after the services started (not counted): POST → \`ready\` p50 / p95 / p99`, trio(r.pool.firstWave), '', '']);
    }
    rows.push(['9', '… pool hit rate (sessions that got a pooled machine)', `${hits} / ${waves.length} (${((100 * hits) / Math.max(1, waves.length)).toFixed(0)} %)`, '', '']);
    if (r.pool.cpuMs?.length) {
      const perSession = (group: string) => r.pool!.cpuMs.reduce((sum, wave) => sum + (wave[group] ?? 0), 0) / waves.length;
      const groups = Object.keys(r.pool.cpuMs[0]).filter((g) => g !== 'whole machine');
      const whole = perSession('whole machine');
      rows.push([
        '9',
        '… CPU ms per session during the waves (the claimed machines, the services, the servers, this client)',
        `${groups.map((g) => `${g} ${perSession(g).toFixed(1)}`).join(', ')}; whole machine ${whole.toFixed(1)} → a wave of ${size} needs ≥ ${ms((size * whole) / cores(r))} of ${cores(r)} cores`,
        '',
        '',
      ]);
    }
    rows.push(['9', '… split p50: queue wait / create-machine (claim + files) / verify-url', `${ms(percentile(waves.map((x) => x.queueWaitMs), 50))} / ${ms(percentile(waves.map((x) => x.steps['create-machine'] ?? Number.NaN), 50))} / ${ms(percentile(waves.map((x) => x.steps['verify-url'] ?? Number.NaN), 50))}`, '', '']);
  }
  if (r.noop) {
    const n = r.noop;
    const seqReady = n.seq.runs.map((x) => x.readyMs);
    const concReady = n.conc.runs.map((x) => x.readyMs);
    const seqOver = percentile(seqReady, 50) - percentile(n.floorSeq, 50);
    const concOver = percentile(concReady, 50) - percentile(n.floorConc, 50);
    const rate = median(n.conc.rates);
    const floorLabel = `${n.floorCounts.sql} SQL + ${n.floorCounts.redis} Redis round trips, plain pg/ioredis`;
    rows.push(['2', `no-op provider, 1 at a time (n=${n.seq.runs.length}): sessions/s`, `${n.seq.rate.toFixed(0)} /s`, '', '']);
    rows.push(['2', '… POST → `ready` p50 / p99', `${ms(percentile(seqReady, 50))} / ${ms(percentile(seqReady, 99))}`, '', '']);
    rows.push(['2', `… floor (${floorLabel}) p50 / p99`, `${ms(percentile(n.floorSeq, 50))} / ${ms(percentile(n.floorSeq, 99))}`, '', '']);
    rows.push(['2', '… overhead = p50 − floor p50', ms(seqOver), '≤ 15 ms', mark(seqOver <= TARGETS.overheadP50)]);
    rows.push([
      '2',
      `no-op provider, ${n.concurrency} at once (${n.conc.rates.length} runs × ${n.conc.runs.length / n.conc.rates.length}): sessions/s, median of runs`,
      `${rate.toFixed(0)} /s (runs: ${n.conc.rates.map((x) => x.toFixed(0)).join(', ')})`,
      '≥ 300 /s',
      mark(rate >= TARGETS.sessionsPerSecond),
    ]);
    rows.push(['2', '… POST → `ready` p50 / p99', `${ms(percentile(concReady, 50))} / ${ms(percentile(concReady, 99))}`, '', '']);
    rows.push(['2', `… floor, ${n.concurrency} at once, p50 / p99`, `${ms(percentile(n.floorConc, 50))} / ${ms(percentile(n.floorConc, 99))}`, '', '']);
    rows.push(['2', '… overhead = p50 − floor p50', ms(concOver), '≤ 15 ms', mark(concOver <= TARGETS.overheadP50)]);
    const cpu = Object.entries(n.conc.cpu)
      .map(([k, v]) => `${k} ${v.toFixed(1)}`)
      .join(', ');
    const total = Object.values(n.conc.cpu).reduce((a, b) => a + b, 0);
    rows.push([
      '2',
      `… CPU ms per session, ${n.concurrency} at once (2 cores = 2000 ms/s; other processes on the machine used ${n.conc.other.toFixed(2)} cores meanwhile)`,
      `${cpu}; total ${total.toFixed(1)} ms → at most ${(2000 / total).toFixed(0)} /s on 2 cores`,
      '≤ 6.7 ms for 300 /s',
      '',
    ]);
    const floorTotal = Object.values(n.floorCpu).reduce((a, b) => a + b, 0);
    rows.push([
      '2',
      `… CPU ms per session of the floor itself, ${n.concurrency} at once`,
      `${Object.entries(n.floorCpu).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}; total ${floorTotal.toFixed(1)} ms → at most ${(2000 / floorTotal).toFixed(0)} /s on 2 cores`,
      '',
      '',
    ]);
    for (const service of ['api', 'provisioner', 'cleanup'] as const) {
      rows.push(['4', `${service} RSS: at rest → with ${n.liveCount} live no-op sessions`, `${mb(n.rest[service])} → ${mb(n.live[service])}`, '', '']);
    }
  }
  if (r.deps) {
    const { uncached, cached, templateCold, pooled } = r.deps;
    const ready = (runs: SessionRun[]) => runs.map((x) => x.readyMs);
    const p50 = (runs: SessionRun[]) => percentile(ready(runs), 50);
    const pair = (runs: SessionRun[]) => `${ms(p50(runs))} / ${ms(percentile(ready(runs), 95))}`;
    const install = (runs: SessionRun[]) => ms(percentile(runs.map((x) => x.steps['install-dependencies'] ?? Number.NaN), 50));
    rows.push(['10', `React template, cold, 1 at a time (n=${templateCold.length}): POST → \`ready\` p50 / p95`, pair(templateCold), '', '']);
    rows.push(['10', `generated app (React + TS, Tailwind 4, router, icons, store; 50 packages), dependencies uncached (n=${uncached.length}): POST → \`ready\` p50 / p95; install p50`, `${pair(uncached)}; install ${install(uncached)}`, '', '']);
    const over = p50(cached) - p50(templateCold);
    rows.push(['10', `… dependencies cached (n=${cached.length}): POST → \`ready\` p50 / p95; over the template's cold p50`, `${pair(cached)}; +${ms(over)}`, '≤ template + 300 ms', mark(over <= TARGETS.cachedOverTemplateMs)]);
    const claimed = pooled.filter((x) => x.pooled).length;
    rows.push([
      '10',
      `… from a warm pool holding its dependency set (DEPENDENCY_POOL=1x1, n=${pooled.length}, ${claimed} claimed a pooled machine): POST → \`ready\` p50 / p95`,
      pair(pooled),
      'p50 ≤ 400 ms',
      mark(claimed === pooled.length && p50(pooled) <= TARGETS.pooledSetMs),
    ]);
  }
  if (r.urlChecks) {
    const u = r.urlChecks;
    rows.push([
      '5',
      'requests to handed-out preview URLs that answered "Session not found"',
      `${u.notFound} of ${u.requests} (non-200 answers: ${u.non200})`,
      '0',
      mark(u.notFound === 0),
    ]);
  }
  rows.sort((a, b) => Number(a[0]) - Number(b[0]));
  const head: Row = ['#', 'measure', 'result', 'target', 'met'];
  const line = (cells: string[]) => `| ${cells.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n');
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
    '- **3**: autocannon, 10 connections, same duration, the same module (`/src/App.jsx`) of one live React session, through the edge (`http://<id>.localhost:<api>/…`, connected on 127.0.0.1) and straight from its Vite dev server (its port is in the container\'s `dev server ready` log line); a short warm-up of each first; req/s is the median of the per-second samples.',
    '- **4**: VmRSS from `/proc/<pid>/status`. Services: the api, provisioner and cleanup processes, at rest (started, idle) and with that many no-op sessions active. Preview container: the container process and all its descendants.',
    '- **9**: a system started with `WARM_POOL=react:20-20`, `PROVISION_CONCURRENCY=20` and `DATABASE_POOL_MIN=10` (each service keeps 10 database connections open), otherwise as in 1. Each session is one request: `POST /v1/sessions` with `Accept: text/event-stream`, answered with its events. The pool is filled, a warm-up wave of 20 sessions runs (not counted: a service in use has its code optimized by V8, one just started has not; its figures are shown apart) and the pool is filled again; before each wave the benchmark waits until the pooled machines are at rest, two seconds in a row under 1 ms of CPU a machine (their start-up, and V8\'s memory-reducing collections some 10 s later, are over), as a pool filled ahead of its sessions is. Then waves of 20 sessions at once, each session\'s URL fetched after `ready`. CPU per session: each group\'s CPU (`/proc/<pid>/task/*/schedstat`) over the waves divided by the sessions; "machines" are the pooled machines that the wave claims, "whole machine" is every process on the machine (`/proc/stat`), refills included. On 2 cores the whole-machine CPU of a wave bounds its time from below. The provisioner runs its sessions\' steps in turns (`PROVISION_TURNS`, by default the CPU count: 2 here), oldest first, so the median session waits for about half the wave\'s CPU rather than nearly all of it. Wave medians of the same code vary from about 210 to 330 ms from run to run (whole-machine CPU per session 37 to 50 ms). `bench/pool-cpu.ts` measures one session at a time. Since `ready` means the app compiled, verify-url asks for the page\'s modules (the entry, its static imports and styles) through the edge before `ready`, so the machine transforms them then rather than at the browser\'s first load: that work is in the machines\', api\'s and provisioner\'s CPU per session and in the time to `ready`.',
    '- **10**: the generated app of `libs/testing/fixtures/projects/generated-app` (its own package.json with caret ranges, vite.config.ts with plugin-react and Tailwind 4), uploaded once, installed from the local test registry (Verdaccio over the prepared storage, no network). Uncached: the dependency cache folder (npm\'s own cache in it too) is emptied before each run; cached: the set installed. Each beside the React template\'s cold sessions in the same system (a warm-up session first, not counted), one at a time, each stopped before the next.',
    '- **5**: every answer of a handed-out URL the benchmark fetched (first loads, one GET of every no-op session\'s URL, the routed load test); a body with "Session not found" counts.',
    '',
  ].join('\n');
  writeFileSync(join(dir, 'benchmarks.md'), text);
}
