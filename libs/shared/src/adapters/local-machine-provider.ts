import { execFile, spawn } from 'node:child_process';
import { mkdir, open, readFile, rm, stat, unlink } from 'node:fs/promises';
import { setPriority } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { TimeoutError, sleep } from '../errors';
import { freePort } from '../net';
import type { Machine, MachineProvider, MachineSpec } from '../machine-provider';
import { withoutSecrets } from '../secret-env';

const REPO_ROOT = resolve(__dirname, '../../../..');
const CONTAINER_ENTRY = join(REPO_ROOT, 'apps/preview-container/src/main.ts');
const run = promisify(execFile);

export interface LocalMachineProviderOptions {
  /** Folder for the machines' work folders and logs; also scopes which machines this provider sees. */
  dir: string;
  /** Command that runs the preview container; defaults to apps/preview-container under swc-node. */
  command?: string[];
}

/** A machine process as the process table shows it. */
interface MachineProcess {
  pid: number;
  sessionId: string;
  port: number;
}

/**
 * Machines as local processes: one detached `apps/preview-container` process per
 * session on a free loopback port. The process table is the source of truth, as
 * a cloud API would be: each machine carries its session id, port and provider
 * folder in its arguments, so any provisioner or cleanup process on this host
 * finds, reuses and destroys it, and a machine outlives the process that made it.
 */
export class LocalMachineProvider implements MachineProvider {
  readonly name = 'local';
  private readonly dir: string;
  private readonly command: string[];
  private readonly creating = new Map<string, Promise<Machine>>();

  constructor(options: LocalMachineProviderOptions) {
    this.dir = resolve(options.dir);
    // A small young generation keeps a preview machine's memory down; Vite does not need more.
    this.command = options.command ?? [process.execPath, '--max-semi-space-size=2', '-r', '@swc-node/register', CONTAINER_ENTRY];
  }

  async create(spec: MachineSpec): Promise<Machine> {
    const pending = this.creating.get(spec.sessionId);
    if (pending) return pending;
    const creation = this.createOnce(spec).finally(() => this.creating.delete(spec.sessionId));
    this.creating.set(spec.sessionId, creation);
    return creation;
  }

  async waitStarted(machine: Machine, timeoutMs: number, signal?: AbortSignal): Promise<Machine> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!(await this.findBySession(machine.sessionId))) {
        throw new Error(`Machine ${machine.id} exited while starting: ${await this.logTail(machine.sessionId)}`);
      }
      if (await answers(`${machine.url}/health`)) return { ...machine, state: 'started' };
      await sleep(25, signal);
    }
    throw new TimeoutError(`machine ${machine.id} to accept connections on ${machine.url}`, timeoutMs);
  }

  async get(machineId: string): Promise<Machine | null> {
    return this.findBySession(sessionIdOf(machineId));
  }

  async findBySession(sessionId: string): Promise<Machine | null> {
    const [found] = (await this.processes()).filter((p) => p.sessionId === sessionId);
    return found ? toMachine(found) : null;
  }

  async destroy(machineId: string): Promise<void> {
    const sessionId = sessionIdOf(machineId);
    const processes = (await this.processes()).filter((p) => p.sessionId === sessionId);
    await Promise.all(processes.map((p) => stopProcessGroup(p.pid)));
    await rm(this.sessionDir(sessionId), { recursive: true, force: true });
  }

  async list(): Promise<Machine[]> {
    return (await this.processes()).map(toMachine);
  }

  /** Every machine process of this provider, including duplicates of one session (for fault checks). */
  async processes(): Promise<MachineProcess[]> {
    const { stdout } = await run('ps', ['-eo', 'pid=,args='], { maxBuffer: 16 * 1024 * 1024 });
    const dirArg = `--vp-dir=${this.dir}`;
    return stdout
      .split('\n')
      .filter((line) => line.includes(dirArg))
      .map(parseProcess)
      .filter((p): p is MachineProcess => p !== null);
  }

  async close(): Promise<void> {
    // Machines are independent processes; nothing to release.
  }

  /**
   * At most one spawn per session: a live process is reused; otherwise the
   * spawn lock (O_EXCL) decides who spawns, and a lock older than a few
   * seconds is from a creator that died and is taken over.
   */
  private async createOnce(spec: MachineSpec): Promise<Machine> {
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const existing = await this.findBySession(spec.sessionId);
      if (existing) return existing;
      const lock = await this.takeSpawnLock(spec.sessionId);
      if (lock) {
        try {
          const again = await this.findBySession(spec.sessionId);
          return again ?? (await this.spawnMachine(spec));
        } finally {
          await unlink(lock).catch(() => undefined);
        }
      }
      await sleep(50);
    }
    throw new TimeoutError(`the spawn lock of session ${spec.sessionId}`, 10_000);
  }

  private async takeSpawnLock(sessionId: string): Promise<string | null> {
    const dir = this.sessionDir(sessionId);
    await mkdir(dir, { recursive: true });
    const lock = join(dir, 'spawn.lock');
    try {
      await (await open(lock, 'wx')).close();
      return lock;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const age = Date.now() - (await stat(lock).then((s) => s.mtimeMs, () => Date.now()));
      if (age > 5000) await unlink(lock).catch(() => undefined);
      return null;
    }
  }

  private async spawnMachine(spec: MachineSpec): Promise<Machine> {
    const sessionDir = this.sessionDir(spec.sessionId);
    const workDir = join(sessionDir, 'work');
    await mkdir(workDir, { recursive: true });
    const port = await freePort();
    const log = await open(join(sessionDir, 'container.log'), 'a');
    const [cmd, ...args] = this.command;
    const markers = [`--vp-machine=${spec.sessionId}`, `--vp-port=${port}`, `--vp-dir=${this.dir}`];
    // '--' ends node's own options, so the markers reach the program even after `node -e`.
    const child = spawn(cmd, [...args, '--', ...markers], {
      cwd: REPO_ROOT,
      detached: true,
      stdio: ['ignore', log.fd, log.fd],
      // MIMALLOC_PURGE_DELAY=0: Vite's bundler (rolldown) hands freed memory back at once.
      // Never the provisioner's credentials (database, Redis, signing secrets): only what the machine is given.
      env: { ...withoutSecrets(process.env), MIMALLOC_PURGE_DELAY: '0', ...spec.env, PORT: String(port), HOST: '127.0.0.1', WORK_DIR: workDir },
    });
    await log.close();
    if (child.pid === undefined) throw new Error(`Could not start the preview container for session ${spec.sessionId}`);
    child.unref();
    if (spec.background) lowerPriority(child.pid);
    return toMachine({ pid: child.pid, sessionId: spec.sessionId, port });
  }

  private async logTail(sessionId: string): Promise<string> {
    const text = await readFile(join(this.sessionDir(sessionId), 'container.log'), 'utf8').catch(() => '');
    return text.trim().split('\n').slice(-5).join(' | ') || 'no output';
  }

  private sessionDir(sessionId: string): string {
    if (!/^[0-9a-f-]{36}$/i.test(sessionId)) throw new Error(`Not a session id: ${sessionId}`);
    return join(this.dir, sessionId);
  }
}

const machineIdOf = (sessionId: string) => `local-${sessionId}`;
const sessionIdOf = (machineId: string) => machineId.replace(/^local-/, '');

function toMachine(p: MachineProcess): Machine {
  return { id: machineIdOf(p.sessionId), sessionId: p.sessionId, url: `http://127.0.0.1:${p.port}`, state: 'started' };
}

function parseProcess(line: string): MachineProcess | null {
  const pid = Number(line.trim().split(/\s+/, 1)[0]);
  const sessionId = line.match(/--vp-machine=([0-9a-f-]{36})/i)?.[1];
  const port = Number(line.match(/--vp-port=(\d+)/)?.[1]);
  return pid && sessionId && port ? { pid, sessionId, port } : null;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** SIGTERM to the machine's process group (Vite's helpers too), SIGKILL after 3 s. */
async function stopProcessGroup(pid: number): Promise<void> {
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(-pid, sig);
    } catch {
      // already gone
    }
  };
  signal('SIGTERM');
  for (let waited = 0; waited < 3000 && isAlive(pid); waited += 50) await sleep(50);
  if (isAlive(pid)) signal('SIGKILL');
}

/** Niceness 10: the machines serving sessions, and the services, get the CPU first. */
function lowerPriority(pid: number): void {
  try {
    setPriority(pid, 10);
  } catch {
    // Not allowed here: it runs at the normal priority.
  }
}


async function answers(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return true;
  } catch {
    return false;
  }
}
