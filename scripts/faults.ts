import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { applyMigrations, dropDatabase, ensureDatabase } from '@velocity/ops';
import { FaultCluster, type ClusterOptions } from '../apps/e2e/src/faults/cluster';
import { FAULT_ENV, STEPS, apiReplicaKilled, killAtStep, postgresOutage, providerFaults, redisRestart } from '../apps/e2e/src/faults/scenarios';
import type { TrialRow } from '../apps/e2e/src/faults/trial';

/**
 * `npm run faults [-- --trials N]`: the fault-injection suite against the real
 * system (its own database, its own Redis server, real preview machines).
 * Prints the table and writes it to docs/faults.md.
 */
async function main() {
  const trials = Number(argValue('--trials') ?? 5);
  const server = new URL(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres');
  server.pathname = `/vp_faults_${randomBytes(4).toString('hex')}`;
  const databaseUrl = server.toString();
  await ensureDatabase(databaseUrl);
  await applyMigrations(databaseUrl);
  const rows: TrialRow[] = [];
  const cluster = (name: string, options: Partial<ClusterOptions> = {}) =>
    FaultCluster.start({ databaseUrl, queuePrefix: `vp-faults-${name}`, provisioners: 2, apis: 2, env: FAULT_ENV, ...options });
  try {
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
  } finally {
    await dropDatabase(databaseUrl);
  }
  const table = renderTable(rows);
  console.log(`\n${table}`);
  writeReport(table, trials);
  const broken = rows.filter((r) => r.stuck + r.orphanMachines + r.duplicateMachines + r.clientsLeftWaiting > 0);
  if (broken.length > 0) {
    console.error(`faults: ${broken.length} rows broke the promise:\n${broken.flatMap((r) => r.problems).join('\n')}`);
    process.exit(1);
  }
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

function writeReport(table: string, trials: number) {
  const dir = join(__dirname, '..', 'docs');
  mkdirSync(dir, { recursive: true });
  const machine = `${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
  writeFileSync(
    join(dir, 'faults.md'),
    [
      '# Fault-injection results',
      '',
      `Written by \`npm run faults -- --trials ${trials}\` on ${new Date().toISOString()}, on ${machine}.`,
      'Each row is real processes (2 provisioners, 2 api replicas behind a balancer, cleanup, real preview machines), its own Redis server and Postgres behind a cuttable proxy.',
      'The promise: zero stuck, zero orphan machines, zero duplicate machines, zero clients left waiting.',
      '',
      table,
      '',
    ].join('\n'),
  );
}

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

main().catch((err) => {
  console.error(`faults: ${err instanceof Error ? err.stack : String(err)}`);
  process.exit(1);
});
