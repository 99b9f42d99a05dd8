import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { freePort, repoRootOf } from '@velocity/runtime';
import type { DoubleMachine, MachineRunner, RunningMachine } from './fly-api-double';

/**
 * Machines of FlyApiDouble as local processes. A Fly machine is a VM of its own,
 * so there is no sandbox here: the process is the machine. It listens on IPv6
 * loopback, as a machine listens on Fly's IPv6-only private network.
 */
export const MACHINE_HOST = '::1';

export interface NodeMachineRunnerOptions {
  /** The script `node` runs. */
  entry: string;
  /** What the image would set, under the machine's own `config.env` (PATH is the test's unless given). */
  env?: Record<string, string>;
  /** When set, each machine gets a fresh folder under it: `WORK_DIR` and `HOME` inside it, and its working directory. */
  workRoot?: string;
  /** The working directory when there is no `workRoot` (the entry's folder). */
  cwd?: string;
  /** How many lines of output each machine keeps for failure messages (50). */
  outputLines?: number;
}

/** Runs `node <entry>` per machine, with `PORT` a free port and `HOST` `::1` over the machine's env. */
export function nodeMachineRunner(options: NodeMachineRunnerOptions): MachineRunner {
  return {
    async start(machine: DoubleMachine, env: Record<string, string>): Promise<RunningMachine> {
      if (!existsSync(options.entry)) throw new Error(`No machine program at ${options.entry} (run npm run build?)`);
      const port = await freePort(MACHINE_HOST);
      const folders = options.workRoot ? await machineFolders(options.workRoot, machine.id) : undefined;
      const child = spawn(process.execPath, [options.entry], {
        cwd: folders?.root ?? options.cwd ?? dirname(options.entry),
        env: {
          PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
          ...options.env,
          ...env,
          ...(folders ? { HOME: folders.home, WORK_DIR: folders.work } : {}),
          PORT: String(port),
          HOST: MACHINE_HOST,
        },
        // Its own process group: a stop reaches what the program started too (Vite's esbuild).
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      return runningMachine(child, port, options.outputLines ?? 50);
    },
  };
}

export interface PreviewContainerRunnerOptions {
  /** The built preview container: `dist/apps/preview-container/src/main.js`. */
  entry: string;
  /** Each machine's `WORK_DIR` is a fresh folder under it. */
  workRoot: string;
  /** What the image would set (e.g. `NODE_ENV`), under the machine's own `config.env`. */
  env?: Record<string, string>;
}

/** The preview container as a machine: `node <entry>` from the repository's root, on `[::1]:<free port>`, in a fresh `WORK_DIR`. */
export function previewContainerRunner(options: PreviewContainerRunnerOptions): MachineRunner {
  return nodeMachineRunner({ ...options, cwd: repoRootOf(dirname(options.entry)) });
}

async function machineFolders(workRoot: string, machineId: string): Promise<{ root: string; work: string; home: string }> {
  const root = await mkdtemp(join(workRoot, `${machineId}-`));
  const work = join(root, 'work');
  const home = join(root, 'home');
  await Promise.all([mkdir(work), mkdir(home)]);
  return { root, work, home };
}

/** The child as a RunningMachine once it has spawned; rejects, with its output, when it cannot. */
async function runningMachine(child: ChildProcess, port: number, outputLines: number): Promise<RunningMachine> {
  const output = new LastLines(outputLines);
  child.stdout?.on('data', (chunk: Buffer) => output.add(chunk));
  child.stderr?.on('data', (chunk: Buffer) => output.add(chunk));
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      // Like a VM whose main process ended: nothing it started lives on.
      signalGroup(child, 'SIGKILL');
      resolve(code);
    });
  });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    // Kept for the process's life: a later error (a signal it could not take) must not go unhandled.
    child.on('error', (error) => reject(new Error(`could not start the machine's process: ${error.message}\n${output.text()}`)));
  });
  return {
    host: MACHINE_HOST,
    port,
    exited,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => signalGroup(child, signal),
    output: () => output.text(),
  };
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // The group has gone already.
  }
}

/** The last `max` lines of a process's output. */
class LastLines {
  private lines: string[] = [];
  private partial = '';

  constructor(private readonly max: number) {}

  add(chunk: Buffer): void {
    const parts = (this.partial + chunk.toString('utf8')).split('\n');
    this.partial = parts.pop() ?? '';
    this.lines.push(...parts);
    if (this.lines.length > this.max) this.lines = this.lines.slice(-this.max);
  }

  text(): string {
    return [...this.lines, this.partial].filter(Boolean).join('\n');
  }
}
