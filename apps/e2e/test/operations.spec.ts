import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sleep } from '@velocity/contracts';
import { TcpProxy, families, samples, scratchDatabase, testQueuePrefix } from '@velocity/testing';
import { startApp, stopProcess, waitForHttp, type AppName } from '@velocity/ops';
import { TrialRedis } from '../src/faults/redis-server';
import { freePort } from '@velocity/runtime';

/**
 * Health, readiness and metrics of every process, on real processes: api,
 * provisioner and cleanup on a Redis of their own (stopped on purpose) and on
 * Postgres behind a proxy that can cut it. /health is liveness and stays 200;
 * /ready names what fails (503) and recovers; the workers' /metrics are behind
 * the operator guard.
 */
const TOKEN = randomBytes(24).toString('base64url');

interface Proc {
  app: AppName;
  child: ChildProcess;
  url: string;
  output: string[];
}

describe('health, readiness and worker metrics (real processes)', () => {
  const redis = new TrialRedis();
  let pgProxy: TcpProxy;
  let database: Awaited<ReturnType<typeof scratchDatabase>>;
  const machinesDir = mkdtempSync(join(tmpdir(), 'vp-ops-'));
  const procs: Proc[] = [];
  let env: NodeJS.ProcessEnv;
  let api: Proc;
  let provisioner: Proc;
  let cleanup: Proc;

  const start = async (app: AppName, port: number, extra: NodeJS.ProcessEnv = {}): Promise<Proc> => {
    const child = startApp(app, { ...env, ...extra }, 'pipe');
    const output: string[] = [];
    child.stdout?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    const proc = { app, child, url: `http://127.0.0.1:${port}`, output };
    procs.push(proc);
    await waitForHttp(`${proc.url}/health`, 30_000, () => child.exitCode !== null).catch((err) => {
      throw new Error(`${app}: ${err.message}\n${output.join('')}`);
    });
    return proc;
  };

  beforeAll(async () => {
    await redis.start();
    database = await scratchDatabase('ops');
    const db = new URL(database.url);
    pgProxy = new TcpProxy([{ host: db.hostname, port: Number(db.port || 5432) }]);
    await pgProxy.listen();
    db.host = `127.0.0.1:${pgProxy.port}`;
    const [apiPort, provisionerPort, cleanupPort] = [await freePort(), await freePort(), await freePort()];
    env = {
      ...process.env,
      NODE_ENV: 'test',
      LOG_LEVEL: 'info',
      DATABASE_URL: db.toString(),
      REDIS_URL: redis.url,
      QUEUE_PREFIX: testQueuePrefix(),
      API_PORT: String(apiPort),
      PROVISIONER_METRICS_PORT: String(provisionerPort),
      CLEANUP_METRICS_PORT: String(cleanupPort),
      LOCAL_MACHINES_DIR: machinesDir,
      OPERATOR_TOKEN: TOKEN,
      READY_TIMEOUT_MS: '1000',
    };
    [api, provisioner, cleanup] = await Promise.all([start('api', apiPort), start('provisioner', provisionerPort), start('cleanup', cleanupPort)]);
  }, 60_000);

  afterAll(async () => {
    await Promise.all(procs.map((p) => stopProcess(p.child)));
    await redis.stop();
    await pgProxy?.close();
    await database?.drop();
    rmSync(machinesDir, { recursive: true, force: true });
  });

  const all = () => [api, provisioner, cleanup];
  const ready = (p: Proc) => fetch(`${p.url}/ready`).then(async (res) => ({ status: res.status, body: (await res.json()) as any }));
  /** Polls /ready of every process until each answers `status`; returns their last answers. */
  const untilReady = async (status: number, timeoutMs = 20_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const answers = await Promise.all(all().map(ready));
      if (answers.every((a) => a.status === status)) return answers;
      if (Date.now() > deadline) throw new Error(`/ready did not become ${status}: ${JSON.stringify(answers)}`);
      await sleep(200);
    }
  };

  it('workers answer /health (liveness) and /ready (Redis and Postgres checked)', async () => {
    for (const p of [provisioner, cleanup]) {
      const health = await fetch(`${p.url}/health`);
      expect(health.status).toBe(200);
      expect(await health.json()).toMatchObject({ status: 'ok', app: p.app, pid: p.child.pid });
    }
    for (const answer of await untilReady(200)) {
      expect(answer.body).toMatchObject({ status: 'ready', checks: { redis: 'ok', postgres: 'ok' }, failing: [] });
    }
  });

  it('worker /metrics is behind the operator guard and has the worker families', async () => {
    for (const p of [provisioner, cleanup]) {
      const anonymous = await fetch(`${p.url}/metrics`);
      expect(anonymous.status).toBe(401);
      expect(anonymous.headers.get('www-authenticate')).toBe('Bearer realm="velocity-preview operators"');
      expect((await fetch(`${p.url}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
      const res = await fetch(`${p.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain('text/plain');
      const text = await res.text();
      expect(families(text)).toMatchObject({ vp_worker_jobs_total: 'counter', process_resident_memory_bytes: 'gauge', nodejs_eventloop_lag_seconds: 'gauge' });
      for (const sample of samples(text, 'process_resident_memory_bytes')) expect(sample.labels.app).toBe(p.app);
    }
    const text = await (await fetch(`${provisioner.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
    expect(families(text)).toMatchObject({
      vp_provision_step_seconds: 'histogram',
      vp_time_to_ready_seconds: 'histogram',
      vp_provision_failures_total: 'counter',
      vp_provision_retries_total: 'counter',
    });
    // Other paths and methods.
    expect((await fetch(`${provisioner.url}/nope`)).status).toBe(404);
    expect((await fetch(`${provisioner.url}/health`, { method: 'POST' })).status).toBe(405);
  });

  it('Postgres cut: /ready is 503 naming postgres on every process, /health stays 200; both recover', async () => {
    pgProxy.cut(5000);
    const answers = await untilReady(503, 4000);
    for (const answer of answers) {
      expect(answer.body).toMatchObject({ statusCode: 503, status: 'not ready', failing: ['postgres'], checks: { redis: 'ok' } });
      expect(answer.body.message).toBe('not ready: postgres failing');
      expect(answer.body.checks.postgres).toMatch(/^failing: /);
    }
    for (const p of all()) expect((await fetch(`${p.url}/health`)).status).toBe(200);
    await untilReady(200, 20_000);
  }, 30_000);

  it('Redis stopped: /ready is 503 naming redis on every process, /health stays 200; both recover on restart', async () => {
    await redis.stop();
    const answers = await untilReady(503, 5000);
    for (const answer of answers) {
      expect(answer.body).toMatchObject({ status: 'not ready', failing: ['redis'], checks: { postgres: 'ok' } });
      expect(answer.body.message).toBe('not ready: redis failing');
    }
    for (const p of all()) expect((await fetch(`${p.url}/health`)).status).toBe(200);
    await redis.start();
    await untilReady(200, 20_000);
  }, 40_000);

  it('a worker whose operator port is taken still works, and says why it has no operator server', async () => {
    const blocker: Server = createServer();
    const port = await new Promise<number>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve((blocker.address() as { port: number }).port)));
    try {
      const child = startApp('provisioner', { ...env, PROVISIONER_METRICS_PORT: String(port) }, 'pipe');
      const output: string[] = [];
      child.stdout?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
      procs.push({ app: 'provisioner', child, url: '', output });
      const deadline = Date.now() + 30_000;
      while (!output.join('').includes('provisioner ready') && Date.now() < deadline && child.exitCode === null) await sleep(100);
      const lines = output.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l));
      expect(lines).toContainEqual(expect.objectContaining({ level: 'error', msg: expect.stringContaining('operator server could not listen'), port }));
      expect(lines).toContainEqual(expect.objectContaining({ msg: 'provisioner ready' }));
      expect(child.exitCode).toBeNull();
      await stopProcess(child);
    } finally {
      blocker.close();
    }
  }, 40_000);
});
