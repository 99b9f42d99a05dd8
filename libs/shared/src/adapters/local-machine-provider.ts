import { spawn } from 'node:child_process';
import { mkdir, open, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { TimeoutError, sleep } from '../errors';
import type { Machine, MachineProvider, MachineSpec } from '../machine-provider';

const REPO_ROOT = resolve(__dirname, '../../../..');
const CONTAINER_ENTRY = join(REPO_ROOT, 'apps/preview-container/src/main.ts');

/** What the local provider keeps of each machine, in `<dir>/<sessionId>/machine.json`. */
interface MachineRecord {
  id: string;
  sessionId: string;
  pid: number;
  port: number;
  url: string;
  createdAt: string;
}

export interface LocalMachineProviderOptions {
  /** Folder for machine records, work folders and logs. */
  dir: string;
  /** Command that runs the preview container; defaults to apps/preview-container under swc-node. */
  command?: string[];
}

/**
 * Machines as local processes: one detached `apps/preview-container` process per
 * session on a free loopback port. Records live on disk, so any provisioner or
 * cleanup process on this host can find, reuse and destroy a machine, as with a
 * real cloud API; a machine outlives the process that created it.
 */
export class LocalMachineProvider implements MachineProvider {
  readonly name = 'local';
  private readonly dir: string;
  private readonly command: string[];
  private readonly creating = new Map<string, Promise<Machine>>();

  constructor(options: LocalMachineProviderOptions) {
    this.dir = resolve(options.dir);
    this.command = options.command ?? [process.execPath, '-r', '@swc-node/register', CONTAINER_ENTRY];
  }

  async create(spec: MachineSpec): Promise<Machine> {
    // One create at a time per session in this process; other processes are kept
    // off by the session folder, which only one mkdir can make.
    const pending = this.creating.get(spec.sessionId);
    if (pending) return pending;
    const creation = this.createOnce(spec).finally(() => this.creating.delete(spec.sessionId));
    this.creating.set(spec.sessionId, creation);
    return creation;
  }

  async waitStarted(machine: Machine, timeoutMs: number, signal?: AbortSignal): Promise<Machine> {
    const deadline = Date.now() + timeoutMs;
    const record = await this.readRecord(machine.sessionId);
    while (Date.now() < deadline) {
      if (!record || !isAlive(record.pid)) {
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
    const record = await this.readRecord(sessionId);
    return record ? toMachine(record) : null;
  }

  async destroy(machineId: string): Promise<void> {
    const sessionId = sessionIdOf(machineId);
    const record = await this.readRecord(sessionId);
    if (record) await stopProcessGroup(record.pid);
    await rm(this.sessionDir(sessionId), { recursive: true, force: true });
  }

  async list(): Promise<Machine[]> {
    const entries = await readdir(this.dir).catch(() => [] as string[]);
    const records = await Promise.all(entries.map((sessionId) => this.readRecord(sessionId)));
    return records.filter((r): r is MachineRecord => r !== null).map(toMachine);
  }

  async close(): Promise<void> {
    // Machines are independent processes; nothing to release.
  }

  private async createOnce(spec: MachineSpec): Promise<Machine> {
    await mkdir(this.dir, { recursive: true });
    const claimed = await mkdir(this.sessionDir(spec.sessionId)).then(() => true, (err) => {
      if (err.code === 'EEXIST') return false;
      throw err;
    });
    if (!claimed) {
      const existing = await this.waitForRecord(spec.sessionId, 5000);
      if (existing && isAlive(existing.pid)) return toMachine(existing);
      if (existing) await stopProcessGroup(existing.pid);
    }
    return this.spawnMachine(spec);
  }

  private async spawnMachine(spec: MachineSpec): Promise<Machine> {
    const sessionDir = this.sessionDir(spec.sessionId);
    const workDir = join(sessionDir, 'work');
    await mkdir(workDir, { recursive: true });
    const port = await freePort();
    const log = await open(join(sessionDir, 'container.log'), 'a');
    const [cmd, ...args] = this.command;
    const child = spawn(cmd, args, {
      cwd: REPO_ROOT,
      detached: true,
      stdio: ['ignore', log.fd, log.fd],
      env: { ...process.env, ...spec.env, PORT: String(port), HOST: '127.0.0.1', WORK_DIR: workDir },
    });
    await log.close();
    if (child.pid === undefined) throw new Error(`Could not start the preview container for session ${spec.sessionId}`);
    child.unref();
    const record: MachineRecord = {
      id: machineIdOf(spec.sessionId),
      sessionId: spec.sessionId,
      pid: child.pid,
      port,
      url: `http://127.0.0.1:${port}`,
      createdAt: new Date().toISOString(),
    };
    const file = join(sessionDir, 'machine.json');
    await writeFile(`${file}.tmp`, JSON.stringify(record));
    await rename(`${file}.tmp`, file);
    return toMachine(record);
  }

  private async waitForRecord(sessionId: string, timeoutMs: number): Promise<MachineRecord | null> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const record = await this.readRecord(sessionId);
      if (record) return record;
      await sleep(50);
    }
    return null;
  }

  private async readRecord(sessionId: string): Promise<MachineRecord | null> {
    try {
      return JSON.parse(await readFile(join(this.sessionDir(sessionId), 'machine.json'), 'utf8')) as MachineRecord;
    } catch {
      return null;
    }
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

function toMachine(record: MachineRecord): Machine {
  return { id: record.id, sessionId: record.sessionId, url: record.url, state: isAlive(record.pid) ? 'started' : 'stopped' };
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

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolvePort(port));
    });
  });
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
