import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { applyMigrations, dropDatabase, ensureDatabase } from '@velocity/ops';
import { FaultCluster, type ClusterOptions } from '../apps/e2e/src/faults/cluster';
import { FAULT_ENV, STEPS, apiReplicaKilled, killAtStep, postgresOutage, providerFaults, redisRestart } from '../apps/e2e/src/faults/scenarios';
import type { TrialRow } from '../apps/e2e/src/faults/trial';
import { loadOutage, type LoadOutageRow } from '../apps/e2e/src/faults/load-outage';

/** Every request of the load rows must be answered within this: the api's Redis and database timeouts, with room. */
const LOAD_BOUND_MS = 5000;
/** New sessions must be accepted within this of the service coming back. */
const RECOVERY_BOUND_MS = 5000;

/**
 * `npm run faults [-- --trials N] [--only trials|load]`: the fault-injection suite against the real
 * system (its own database, its own Redis server, real preview machines).
 * Prints the tables and writes them to docs/faults.md (with --only, just that table).
 */
async function main() {
  const trials = Number(argValue('--trials') ?? 5);
  const only = argValue('--only');
  const server = new URL(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres');
  server.pathname = `/vp_faults_${randomBytes(4).toString('hex')}`;
  const databaseUrl = server.toString();
  await ensureDatabase(databaseUrl);
  await applyMigrations(databaseUrl);
  const rows: TrialRow[] = [];
  const loadRows: LoadOutageRow[] = [];
  const cluster = (name: string, options: Partial<ClusterOptions> = {}) =>
    FaultCluster.start({ databaseUrl, queuePrefix: `vp-faults-${name}`, provisioners: 2, apis: 2, env: FAULT_ENV, ...options });
  try {
    if (only !== 'trials') {
      await withCluster(cluster('load'), async (c) => {
        for (const dependency of ['redis', 'database'] as const) {
          loadRows.push(reportLoad(await loadOutage(c, { dependency, outageMs: 10_000, boundMs: LOAD_BOUND_MS })));
        }
      });
    }
    if (only !== 'load') await runTrials(cluster, trials, rows);
  } finally {
    await dropDatabase(databaseUrl);
  }
  const table = renderTable(rows);
  const loadTable = renderLoadTable(loadRows);
  console.log(`\n${table}\n\n${loadTable}`);
  writeReport({ trials: only === 'load' ? undefined : table, load: only === 'trials' ? undefined : loadTable }, trials);
  const broken = rows.filter((r) => r.stuck + r.orphanMachines + r.duplicateMachines + r.clientsLeftWaiting > 0);
  const brokenLoad = loadRows.filter((r) => !keptLoadPromise(r));
  if (broken.length + brokenLoad.length > 0) {
    console.error(`faults: ${broken.length + brokenLoad.length} rows broke the promise:\n${[...broken, ...brokenLoad].flatMap((r) => r.problems).join('\n')}`);
    process.exit(1);
  }
}

async function runTrials(cluster: (name: string, options?: Partial<ClusterOptions>) => Promise<FaultCluster>, trials: number, rows: TrialRow[]) {
  {
    await withCluster(cluster('main'), async (c) => {
      for (const step of STEPS) rows.push(report(await killAtStep(c, step, trials)));
      rows.push(report(await redisRestart(c, trials)));
      rows.push(report(await postgresOutage(c, trials, 3000)));
      rows.push(report(await apiReplicaKilled(c, trials)));
    });
    await withCluster(cluster('failing', { env: { ...FAULT_ENV, FAULTS: 'fail-create=0.3' } }), async (c) => {
      rows.push(report(await providerFaults(c, 'provider fails 30% of creates', trials * 2)));
    });
    await withCluster(cluster('hanging', { env: { ...FAULT_ENV, FAULTS: 'hang-create=0.3', MACHINE_START_TIMEOUT_MS: '3000' } }), async (c) => {
      rows.push(report(await providerFaults(c, 'provider hangs on 30% of creates', trials * 2)));
    });
  }
}

/** The promise of a load row: every request answered in time, none of what a failed answer forbids, recovery in time. */
function keptLoadPromise(r: LoadOutageRow): boolean {
  return (
    r.answeredWithinBound === r.requests &&
    r.unavailableWithoutRetryAfter === 0 &&
    r.ghostSessions === 0 &&
    r.lostWrites === 0 &&
    r.streamsEnded + r.streamsServing === r.streams &&
    r.recoveryAcceptMs !== null &&
    r.recoveryAcceptMs <= RECOVERY_BOUND_MS &&
    r.recoveryReadyMs !== null
  );
}

function reportLoad(row: LoadOutageRow): LoadOutageRow {
  console.log(
    `faults: ${row.fault}: ${row.answeredWithinBound}/${row.requests} answered within ${LOAD_BOUND_MS} ms (slowest ${row.slowestMs} ms), ` +
      `${row.unavailable} 503, ${row.ghostSessions} ghost sessions, ${row.lostWrites} lost writes, ` +
      `${row.streamsEnded}/${row.streams} streams ended and ${row.streamsServing} still serving, ` +
      `accepting again after ${row.recoveryAcceptMs ?? '-'} ms, ready after ${row.recoveryReadyMs ?? '-'} ms`,
  );
  for (const problem of row.problems) console.log(`faults:   ${problem}`);
  return row;
}

function renderLoadTable(rows: LoadOutageRow[]): string {
  const head = ['fault', 'requests', `answered within ${LOAD_BOUND_MS / 1000} s`, 'slowest answer', '503 (all with Retry-After)', 'ghost sessions', 'acknowledged writes lost', 'event streams: ended / still serving', 'first session accepted after recovery', 'and ready'];
  const ms = (value: number | null) => (value === null ? 'never' : `${(value / 1000).toFixed(1)} s`);
  const lines = rows.map((r) => [
    r.fault, r.requests, r.answeredWithinBound, ms(r.slowestMs), `${r.unavailable}${r.unavailableWithoutRetryAfter ? ` (${r.unavailableWithoutRetryAfter} without)` : ''}`,
    r.ghostSessions, r.lostWrites, `${r.streamsEnded} / ${r.streamsServing} of ${r.streams}`, ms(r.recoveryAcceptMs), ms(r.recoveryReadyMs),
  ]);
  return [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...lines.map((l) => `| ${l.join(' | ')} |`)].join('\n');
}

async function withCluster(starting: Promise<FaultCluster>, run: (cluster: FaultCluster) => Promise<void>) {
  const cluster = await starting;
  try {
    await run(cluster);
  } finally {
    await cluster.stop();
  }
}

function report(row: TrialRow): TrialRow {
  console.log(`faults: ${row.fault}: ${row.active} active, ${row.error} error, ${row.stuck} stuck (${(row.ms / 1000).toFixed(1)} s)`);
  for (const problem of row.problems) console.log(`faults:   ${problem}`);
  return row;
}

function renderTable(rows: TrialRow[]): string {
  const head = ['fault', 'trials', 'sessions asked', 'active', 'error', 'stuck', 'orphan machines', 'duplicate machines', 'clients left waiting', 'client reconnects'];
  const lines = rows.map((r) => [r.fault, r.trials, r.asked, r.active, r.error, r.stuck, r.orphanMachines, r.duplicateMachines, r.clientsLeftWaiting, r.clientReconnects]);
  return [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...lines.map((l) => `| ${l.join(' | ')} |`)].join('\n');
}

const TRIALS_SECTION = 'fault trials';
const LOAD_SECTION = 'outages under load';

/** Writes docs/faults.md; a table not run this time is kept as it was. */
function writeReport(tables: { trials?: string; load?: string }, trials: number) {
  const dir = join(__dirname, '..', 'docs');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'faults.md');
  const previous = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const machine = `${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
  const written = `Written by \`npm run faults\` on ${new Date().toISOString()}, on ${machine}.`;
  const trialsSection =
    tables.trials === undefined
      ? sectionOf(previous, TRIALS_SECTION)
      : [
          `${written} ${trials} trials a fault.`,
          'Each row is real processes (2 provisioners, 2 api replicas behind a balancer, cleanup, real preview machines), its own Redis server and Postgres behind cuttable proxies.',
          'The promise: zero stuck, zero orphan machines, zero duplicate machines, zero clients left waiting.',
          '',
          tables.trials,
        ].join('\n');
  const loadSection =
    tables.load === undefined
      ? sectionOf(previous, LOAD_SECTION)
      : [
          written,
          'The same system under a steady load (a session request a second, four file writes a second, three event streams held open on live sessions) while the proxy in front of Redis or Postgres drops every connection and refuses new ones for 10 s.',
          `The promise: every request answered within ${LOAD_BOUND_MS / 1000} s (a 503 with Retry-After while the service is gone), no session made from a request answered as failed (ghost), no acknowledged write missing from the database, every open event stream either ended by the api or still serving (heartbeats) after the outage, none left hanging, and new sessions accepted within ${RECOVERY_BOUND_MS / 1000} s of recovery.`,
          '',
          tables.load,
        ].join('\n');
  writeFileSync(
    file,
    ['# Fault-injection results', '', section(TRIALS_SECTION, trialsSection), '', section(LOAD_SECTION, loadSection), ''].join('\n'),
  );
}

function section(name: string, body: string): string {
  return `<!-- ${name} -->\n## ${name[0].toUpperCase()}${name.slice(1)}\n\n${body}\n<!-- end ${name} -->`;
}

/** A section's body as written before (between its markers), or a note that it was not run. */
function sectionOf(previous: string, name: string): string {
  const match = new RegExp(`<!-- ${name} -->\\n## [^\\n]*\\n\\n([\\s\\S]*?)\\n<!-- end ${name} -->`).exec(previous);
  return match?.[1] ?? 'Not run yet.';
}

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

main().catch((err) => {
  console.error(`faults: ${err instanceof Error ? err.stack : String(err)}`);
  process.exit(1);
});
