import { randomBytes } from 'node:crypto';
import Redis from 'ioredis';
import { WarmPool } from '@velocity/machines';
import { applyMigrations, dropDatabase, ensureDatabase, withDatabase } from '@velocity/ops';
import { runSession, stopSessions } from './lib/client';
import { cpuMeter, pidsByName, processTree } from './lib/proc';
import { startBenchSystem } from './lib/services';
import { median } from './lib/stats';

/**
 * `node -r @swc-node/register bench/pool-cpu.ts [N] [PROFILE_DIR]`: the CPU one pooled session
 * costs each process (api, provisioner, the pool's machines, Redis, Postgres,
 * this client), from its POST to its `ready`, one session at a time on an idle
 * system; N sessions (default 8), the first a warm-up. The pool is filled once,
 * for all of them, so no refill runs meanwhile. For finding what to make
 * cheaper (docs/benchmarks.md, "Warm pool: where the time goes"); not a figure of the report.
 */
async function main() {
  const n = Number(process.argv[2] ?? 8);
  // A folder for V8 CPU profiles of the api, provisioner and cleanup (`--cpu-prof`), written when they stop.
  const profDir = process.argv[3];
  const id = randomBytes(4).toString('hex');
  const databaseUrl = withDatabase(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres', `vp_bench_${id}`);
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const prefix = `vp-bench-${id}`;
  await ensureDatabase(databaseUrl);
  const redis = new Redis(redisUrl);
  try {
    await applyMigrations(databaseUrl);
    const sys = await startBenchSystem({ databaseUrl, queuePrefix: prefix, env: { MACHINE_PROVIDER: 'local', WARM_POOL: `react:${n}-${n}`, POOL_REFILL_EVERY_MS: '600000' }, nodeArgs: profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [] });
    try {
      const warm = new WarmPool(redis, prefix);
      const started = Date.now();
      while ((await warm.size({ templateType: 'react', tier: 'free' })) < n) {
        if (Date.now() - started > 300_000) throw new Error(`the pool did not reach ${n} machines in 300 s`);
        await new Promise((r) => setTimeout(r, 250));
      }
      const rows: Array<Record<string, number>> = [];
      for (let i = 0; i < n; i++) {
        // The machines' start-up settles first.
        await new Promise((r) => setTimeout(r, 1500));
        const machines = (await sys.machines.processes()).map((p) => p.pid);
        const meter = cpuMeter({
          api: () => [sys.pids.api],
          provisioner: () => [sys.pids.provisioner],
          machines: () => machines.flatMap((pid) => processTree(pid)),
          redis: () => pidsByName(/^redis-server$/),
          postgres: () => pidsByName(/^postgres$/),
          client: () => [process.pid],
        });
        const run = await runSession(sys.baseUrl, { fetchUrl: false });
        const cpu = meter.stop();
        const row = { readyMs: run.readyMs, ...cpu };
        console.log(`${i === 0 ? 'warm-up ' : ''}${Object.entries(row).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}`);
        if (i > 0) rows.push(row);
        await stopSessions(sys.baseUrl, [run.sessionId]);
      }
      const keys = Object.keys(rows[0] ?? {});
      console.log(`median of ${rows.length}: ${keys.map((k) => `${k} ${median(rows.map((r) => r[k])).toFixed(1)}`).join(', ')} (ms)`);
    } finally {
      await sys.stop();
    }
  } finally {
    await dropDatabase(databaseUrl);
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`pool-cpu: ${(err as Error).message}`);
    process.exit(1);
  },
);
