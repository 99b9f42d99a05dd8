import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readlinkSync, realpathSync } from 'node:fs';
import { chmod, chown, link, lstat, mkdir, open, readFile, readdir, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { availableParallelism, constants } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { DEFAULT_PREVIEW_CONTAINER_ENTRY, MACHINE_VITE_CACHE_DIR, PREVIEW_CONTAINER_NODE_FLAGS, PermanentError, TimeoutError, sleep } from '@velocity/contracts';
import { requestText, unixSocketOf, unixSocketUrl, assertSocketPathFits, freePort, repoRootOf } from '@velocity/runtime';
import { whileMachineRuns, type Machine, type MachineExit, type MachineProvider, type MachineSpec } from './machine-provider';
import { VitePrebundles } from './vite-prebundles';
import { StartSlots } from './start-slots';
import { MACHINE_SOCKET_NAME, SANDBOX_API_DIR, bubblewrapLaunch, bubblewrapProblem, chooseSandbox, findExecutable, machineUserOf, plainLaunch, type MachineLaunch, type MachineRun, type MachineUser, type SandboxSetting } from './machine-sandbox';

const REPO_ROOT = repoRootOf(__dirname);
const run = promisify(execFile);
/** nobody: the user machines run as when the provider is root and no other is configured. */
const NOBODY = 65534;
/** A warm-pool machine's niceness while it waits: the machines serving sessions, and the services, get the CPU first. */
const BACKGROUND_NICENESS = 10;

export interface LocalMachineProviderOptions {
  /** Folder for the machines' work folders and logs; also scopes which machines this provider sees. */
  dir: string;
  /**
   * The program machines run: PREVIEW_CONTAINER_ENTRY, the preview container's built main, from the
   * repository's root (specs pass a fake machine's file). A sandbox shows its folder.
   */
  entry?: string;
  /**
   * Command that runs the preview container; defaults to node on `entry`.
   * In a sandbox its files must lie in the repo parts the sandbox shows (see machine-sandbox.ts).
   */
  command?: string[];
  /** MACHINE_SANDBOX: `auto` (the default), `bubblewrap` (required) or `none`. */
  sandbox?: SandboxSetting;
  /** MACHINE_UID and MACHINE_GID: who machines run as when this process is root; default nobody (65534). */
  machineUid?: number;
  machineGid?: number;
  /** The bwrap program; default: `bwrap` on PATH. */
  bubblewrap?: string;
  /**
   * The api's Unix socket for machines (MACHINE_API_SOCKET). Sandboxed machines,
   * which have no network, see its folder read-only and reach the api there
   * (`machineApiUrl`); without it they reach no api.
   */
  apiSocket?: string;
  /**
   * Whether sandboxed machines start with their dependency set's shared pre-bundled dependencies
   * (vite-prebundles.ts); default: when the machines run the built preview container.
   */
  prebundle?: boolean;
  /**
   * How many machines may be starting at once (StartSlots); default: the CPU count when the
   * machines run the built preview container (a start is CPU-bound), else no limit to speak of.
   */
  startConcurrency?: number;
}

/** A machine process as the process table shows it. */
interface MachineProcess {
  pid: number;
  sessionId: string;
  /** The loopback port it listens on; none for a sandboxed machine, which listens on a socket in its session folder. */
  port?: number;
}

/** The file in a session's folder that holds its machine's pid: the provider's, the machine cannot write it. */
const PID_FILE = 'machine.pid';
/** Beside it: how that process ended (`{ pid, code, signal }`), written by the process that spawned it, for every other. */
const EXIT_FILE = 'machine.exit';
/** How often a machine spawned by another process is looked at for its exit. */
const EXIT_POLL_MS = 100;
/** How long the machine that pre-bundles a dependency set may take, and how long after a failure it is not tried again. */
const PREBUNDLE_TIMEOUT_MS = 120_000;
const PREBUNDLE_RETRY_MS = 60_000;
const NIL_UUID = '00000000-0000-0000-0000-000000000000';
/** A machine's start slot is given back when it serves (/serving 200), exits, or after this long. */
const START_SLOT_MAX_MS = 30_000;
const START_POLL_MS = 50;

/**
 * Machines as local processes: one detached `apps/preview-container` process per
 * session, in a bubblewrap sandbox without network unless MACHINE_SANDBOX says
 * otherwise (machine-sandbox.ts), as an unprivileged user when this process is
 * root. A sandboxed machine serves on a Unix socket (`<dir>/<session>/http.sock`,
 * see `linkMachineSocket`) and reaches the api on its socket; an unsandboxed one
 * serves on a free loopback port. The process table is the source of truth, as
 * a cloud API would be: each machine carries its session id, its port (or that
 * it is on a socket) and the provider folder in its arguments, so any
 * provisioner or cleanup process on this host finds, reuses and destroys it,
 * and a machine outlives the process that made it.
 */
export class LocalMachineProvider implements MachineProvider {
  readonly name = 'local';
  /** `sandbox` (bubblewrap) or `none` (a plain process: it reads what its user may read). */
  readonly isolation: 'sandbox' | 'none';
  /** The operator chose MACHINE_SANDBOX=none: unsandboxed machines may run any project's code. */
  readonly allowsUnsandboxedCode: boolean;
  /** Why machines are not sandboxed under MACHINE_SANDBOX=auto (bubblewrap missing or not working); null otherwise. */
  readonly sandboxProblem: string | null;
  /** Sandboxed machines with an api socket: the api's socket as they see it. Unset: API_INTERNAL_URL. */
  readonly machineApiUrl?: string;
  private readonly dir: string;
  /** The folder of the api's socket, shown to sandboxed machines. */
  private readonly apiDir?: string;
  private readonly command: string[];
  /** The container's build folder (its main in `src/`, the templates it reads beside it), shown in a sandbox. */
  private readonly programDir: string;
  /** The built main this provider runs (no `command` given), which must exist before a machine starts. */
  private readonly builtEntry?: string;
  private readonly bwrap: string | null;
  /** Set when machines run as another user than this process. */
  private readonly user?: MachineUser;
  private readonly creating = new Map<string, Promise<Machine>>();
  /** Vite's pre-bundled dependencies per dependency set, for sandboxed machines (vite-prebundles.ts). */
  private readonly prebundles: VitePrebundles;
  /** Per key, the run making its pre-bundles; the machines of those runs (by session id), which are not seeded. */
  private readonly prebundling = new Map<string, Promise<void>>();
  private readonly prebundleMachines = new Set<string>();
  private readonly prebundleFailedAt = new Map<string, number>();
  private readonly prebundle: boolean;
  private readonly startSlots: StartSlots;
  private closed = false;
  /** The machines this process spawned that still run, by session: their exit is known the moment it happens. */
  private readonly running = new Map<string, { pid: number; exit: Promise<Pick<MachineExit, 'code' | 'signal'>> }>();

  /** Throws (one line naming MACHINE_SANDBOX) when bubblewrap is required and does not work here. */
  constructor(options: LocalMachineProviderOptions) {
    this.dir = resolve(options.dir);
    this.prebundles = new VitePrebundles(join(this.dir, '.prebundled'));
    const entry = resolve(REPO_ROOT, options.entry ?? DEFAULT_PREVIEW_CONTAINER_ENTRY);
    this.programDir = dirname(dirname(entry));
    if (!options.command) this.builtEntry = entry;
    const builtContainer = !options.command && entry === resolve(REPO_ROOT, DEFAULT_PREVIEW_CONTAINER_ENTRY);
    this.prebundle = options.prebundle ?? builtContainer;
    this.startSlots = new StartSlots(options.startConcurrency ?? (builtContainer ? availableParallelism() : 64));
    this.command = options.command ?? [process.execPath, ...PREVIEW_CONTAINER_NODE_FLAGS, entry];
    this.user = machineUserOf({ uid: options.machineUid ?? NOBODY, gid: options.machineGid ?? NOBODY });
    this.bwrap = options.bubblewrap ?? findExecutable('bwrap');
    const setting = options.sandbox ?? 'auto';
    const choice = chooseSandbox(setting, () => bubblewrapProblem(this.bwrap, REPO_ROOT, this.programDir, this.user));
    this.isolation = choice.isolation;
    this.sandboxProblem = choice.problem;
    this.allowsUnsandboxedCode = setting === 'none';
    if (this.isolation === 'sandbox') {
      assertSocketPathFits(this.socketPathOf('00000000-0000-0000-0000-000000000000'), 'a machine\'s socket under LOCAL_MACHINES_DIR');
      if (options.apiSocket) {
        this.apiDir = dirname(resolve(options.apiSocket));
        this.machineApiUrl = unixSocketUrl(join(SANDBOX_API_DIR, basename(options.apiSocket)));
      }
    }
  }

  async create(spec: MachineSpec, signal?: AbortSignal): Promise<Machine> {
    const pending = this.creating.get(spec.sessionId);
    if (pending) return pending;
    const creation = this.createInTurn(spec, signal).finally(() => this.creating.delete(spec.sessionId));
    this.creating.set(spec.sessionId, creation);
    return creation;
  }

  /** A machine that runs already is returned at once; a new one waits for a start slot first (StartSlots). */
  private async createInTurn(spec: MachineSpec, signal?: AbortSignal): Promise<Machine> {
    const existing = await this.findBySession(spec.sessionId);
    if (existing) return existing;
    const release = await this.startSlots.take(spec.background, signal);
    let handedOver = false;
    try {
      return await this.createOnce(spec, (machine) => {
        handedOver = true;
        this.releaseWhenServing(machine, release);
      });
    } finally {
      if (!handedOver) release();
    }
  }

  /** Gives the start slot back once the machine serves its preview (or the reason it cannot), exits, or takes too long. */
  private releaseWhenServing(machine: Machine, release: () => void): void {
    const until = Date.now() + START_SLOT_MAX_MS;
    void (async () => {
      while (Date.now() < until && this.running.has(machine.sessionId)) {
        const reachable = unixSocketOf(machine.url) === null || (await this.linkMachineSocket(machine.sessionId));
        const serving = reachable && (await requestText(`${machine.url}/serving`, { signal: AbortSignal.timeout(1000) }).catch(() => null));
        if (serving && serving.status === 200) return;
        await sleep(START_POLL_MS);
      }
    })()
      .catch(() => undefined)
      .finally(release);
  }

  async waitStarted(machine: Machine, timeoutMs: number, signal?: AbortSignal): Promise<Machine> {
    return whileMachineRuns(this, machine, signal, (within) => this.untilAnswers(machine, timeoutMs, within));
  }

  /**
   * The machine's exit: at once for a machine this process spawned (its exit
   * event), else when its recorded pid no longer runs it (looked at every
   * EXIT_POLL_MS), with the code its spawner recorded when there is one.
   */
  async exited(machine: Machine, signal: AbortSignal): Promise<MachineExit> {
    const sessionId = sessionIdOf(machine.id);
    const own = this.running.get(sessionId);
    const how = own ? await abortable(own.exit, signal) : await this.exitSeenFromOutside(sessionId, signal);
    return { ...how, lastOutput: await this.lastOutputLine(sessionId) };
  }

  private async untilAnswers(machine: Machine, timeoutMs: number, signal: AbortSignal): Promise<Machine> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const reachable = unixSocketOf(machine.url) === null || (await this.linkMachineSocket(machine.sessionId));
      if (reachable && (await answers(`${machine.url}/health`, signal))) return { ...machine, state: 'started' };
      await sleep(25, signal);
    }
    throw new TimeoutError(`machine ${machine.id} to accept connections on ${machine.url}`, timeoutMs);
  }

  private async exitSeenFromOutside(sessionId: string, signal: AbortSignal): Promise<Pick<MachineExit, 'code' | 'signal'>> {
    // Its recorded pid answers without listing every process; the listing covers a machine spawned without one.
    while ((await this.recordedPid(sessionId)) !== undefined || (await this.findBySession(sessionId))) await sleep(EXIT_POLL_MS, signal);
    const [pid, recorded] = await Promise.all([
      readFile(join(this.sessionDir(sessionId), PID_FILE), 'utf8').catch(() => ''),
      readFile(join(this.sessionDir(sessionId), EXIT_FILE), 'utf8').then((text) => JSON.parse(text) as { pid?: number; code?: number | null; signal?: string | null }, () => null),
    ]);
    if (!recorded || String(recorded.pid) !== pid.trim()) return { code: null, signal: null };
    return { code: recorded.code ?? null, signal: recorded.signal ?? null };
  }

  async get(machineId: string): Promise<Machine | null> {
    return this.findBySession(sessionIdOf(machineId));
  }

  async findBySession(sessionId: string): Promise<Machine | null> {
    const [found] = (await this.processes()).filter((p) => p.sessionId === sessionId);
    return found ? this.toMachine(found) : null;
  }

  async destroy(machineId: string): Promise<void> {
    const sessionId = sessionIdOf(machineId);
    const processes = (await this.processes()).filter((p) => p.sessionId === sessionId);
    await Promise.all(processes.map((p) => stopProcessGroup(p.pid)));
    // Retried: a write the machine had under way when it was killed may still land while its folder goes.
    await rm(this.sessionDir(sessionId), { recursive: true, force: true, maxRetries: 3 });
  }

  async list(): Promise<Machine[]> {
    return (await this.processes()).map((p) => this.toMachine(p));
  }

  /**
   * Every machine of this provider, one process each: the one this provider
   * spawned, whose process group `destroy` signals. Sandboxed, the markers
   * also show in the arguments of bwrap's init and of the program inside; those
   * live in the sandbox's PID namespace, and only processes of this process's
   * namespace count (a machine cannot make one there, so it cannot pose as
   * another session's machine). Duplicates of one session are kept (for fault checks).
   */
  async processes(): Promise<MachineProcess[]> {
    const { stdout } = await run('ps', ['-eo', 'pid=,pidns=,args='], { maxBuffer: 16 * 1024 * 1024 });
    const ownPidns = ownPidNamespace();
    return stdout
      .split('\n')
      .map(parseProcess)
      .filter((p): p is ParsedProcess => p !== null && p.dir === this.dir && (ownPidns === null || p.pidns === ownPidns))
      .map(({ pid, sessionId, port }) => ({ pid, sessionId, port }));
  }

  /**
   * A warm-pool machine (started at niceness 10) now serves a session: every
   * thread of its processes back to niceness 0. The machine cannot do it
   * itself (an unprivileged process may not raise its priority); this process
   * can when it is root. False when it is not allowed or the machine is gone.
   */
  async restorePriority(machineId: string): Promise<boolean> {
    const sessionId = sessionIdOf(machineId);
    // Its recorded pid when it still runs this machine (a claim is on a session's path: no listing of every process).
    const pid = (await this.recordedPid(sessionId)) ?? (await this.processes()).find((p) => p.sessionId === sessionId)?.pid;
    if (pid === undefined) return false;
    // By process group (PRIO_PGRP): all threads of all its processes; os.setPriority sets a single thread.
    return run('renice', ['-n', '0', '-g', String(pid)]).then(
      () => true,
      () => false,
    );
  }

  /** The pid the provider recorded when it spawned the session's machine, if that process is still this machine. */
  private async recordedPid(sessionId: string): Promise<number | undefined> {
    const pid = Number(await readFile(join(this.sessionDir(sessionId), PID_FILE), 'utf8').catch(() => ''));
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    const args = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    return args.includes(`--vp-machine=${sessionId}`) && args.includes(`--vp-dir=${this.dir}`) ? pid : undefined;
  }

  /** Machines are independent processes and stay; only a pre-bundling machine, which no one else knows of, is stopped. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.prebundleMachines].map((sessionId) => this.destroy(machineIdOf(sessionId)).catch(() => undefined)));
    await this.prebundlesMade();
  }

  /**
   * At most one spawn per session: a live process is reused; otherwise the
   * spawn lock (O_EXCL) decides who spawns, and a lock older than a few
   * seconds is from a creator that died and is taken over.
   */
  private async createOnce(spec: MachineSpec, spawned: (machine: Machine) => void): Promise<Machine> {
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const existing = await this.findBySession(spec.sessionId);
      if (existing) return existing;
      const lock = await this.takeSpawnLock(spec.sessionId);
      if (lock) {
        try {
          const again = await this.findBySession(spec.sessionId);
          if (again) return again;
          const machine = await this.spawnMachine(spec);
          spawned(machine);
          return machine;
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
    if (this.builtEntry && !existsSync(this.builtEntry)) {
      throw new PermanentError(`The preview container is not built: ${this.builtEntry} is missing (run npm run build, or set PREVIEW_CONTAINER_ENTRY)`);
    }
    const sessionDir = this.sessionDir(spec.sessionId);
    const { workDir, homeDir, runDir } = await this.machineFolders(sessionDir);
    await this.seedPrebundles(spec, workDir);
    // Sandboxed: on a socket in its run folder; `--vp-socket` says so to whoever lists the machines.
    const port = this.isolation === 'sandbox' ? undefined : await freePort();
    await rm(join(sessionDir, EXIT_FILE), { force: true });
    const log = await open(join(sessionDir, 'container.log'), 'a', 0o600);
    const markers = [`--vp-machine=${spec.sessionId}`, port === undefined ? '--vp-socket' : `--vp-port=${port}`, `--vp-dir=${this.dir}`];
    // '--' ends node's own options, so the markers reach the program even after `node -e`.
    const machine: MachineRun = { command: [...this.command, '--', ...markers], workDir, homeDir, env: spec.env, repoRoot: REPO_ROOT, programDir: this.programDir, user: this.user, dependenciesDir: spec.dependencies?.nodeModulesDir };
    const launch = inBackground(port === undefined ? this.sandboxedLaunch(machine, runDir) : plainLaunch(machine, port), spec.background);
    const child = spawn(launch.file, launch.args, {
      cwd: launch.cwd,
      env: launch.env,
      uid: launch.user?.uid,
      gid: launch.user?.gid,
      // Its own process group, which `destroy` signals; no process of the provider waits for it.
      detached: true,
      stdio: ['ignore', log.fd, log.fd],
    });
    // A failed spawn leaves no pid (handled below); its 'error' event must not go unhandled.
    child.once('error', () => undefined);
    await log.close();
    if (child.pid === undefined) throw new Error(`Could not start the preview container for session ${spec.sessionId}`);
    this.watchExit(spec.sessionId, child, child.pid);
    child.unref();
    // In the provider's own folder (the machine cannot write it): restorePriority finds the process without listing all.
    await writeFile(join(sessionDir, PID_FILE), String(child.pid));
    return this.toMachine({ pid: child.pid, sessionId: spec.sessionId, port });
  }

  /**
   * A sandboxed machine starts with its set's pre-bundled dependencies (its root is the same
   * path in every sandbox, so Vite takes them); the first machine of a set has them made.
   */
  private async seedPrebundles(spec: MachineSpec, workDir: string): Promise<void> {
    if (!this.prebundle || this.isolation !== 'sandbox' || this.prebundleMachines.has(spec.sessionId)) return;
    const nodeModulesDir = realpathSync(spec.dependencies?.nodeModulesDir ?? join(REPO_ROOT, 'node_modules'));
    const key = VitePrebundles.keyOf(nodeModulesDir, spec.templateType);
    const seeded = await this.prebundles.seed(key, join(workDir, MACHINE_VITE_CACHE_DIR), this.user).catch(() => false);
    if (!seeded) this.makePrebundles(key, spec);
  }

  /**
   * In the background, once at a time per key: a pooled machine on the template's files
   * (nothing of any user's runs in it) loads its page, and its bundles are kept.
   */
  private makePrebundles(key: string, spec: MachineSpec): void {
    if (this.closed || this.prebundling.has(key) || Date.now() - (this.prebundleFailedAt.get(key) ?? 0) < PREBUNDLE_RETRY_MS) return;
    const routeId = randomUUID();
    this.prebundleMachines.add(routeId);
    const making = (async () => {
      const machine = await this.create({
        sessionId: routeId,
        projectId: NIL_UUID,
        templateType: spec.templateType,
        resourceLimits: spec.resourceLimits,
        background: true,
        env: { ROUTE_ID: routeId, POOL_CLAIM_TOKEN: randomBytes(24).toString('hex'), TEMPLATE_TYPE: spec.templateType },
        ...(spec.dependencies ? { dependencies: spec.dependencies } : {}),
      });
      try {
        await this.untilHealthy(await this.waitStarted(machine, PREBUNDLE_TIMEOUT_MS), PREBUNDLE_TIMEOUT_MS);
        if (!(await this.prebundles.keep(key, join(this.sessionDir(routeId), 'work', MACHINE_VITE_CACHE_DIR)))) throw new Error('no pre-bundled dependencies');
      } finally {
        await this.destroy(machine.id);
      }
    })()
      .catch(() => void this.prebundleFailedAt.set(key, Date.now()))
      .finally(() => {
        this.prebundling.delete(key);
        this.prebundleMachines.delete(routeId);
      });
    this.prebundling.set(key, making);
  }

  /** Until the machine's /health says 200 (a pooled machine: its page loaded, its dependencies pre-bundled). */
  private async untilHealthy(machine: Machine, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const health = await requestText(`${machine.url}/health`, { signal: AbortSignal.timeout(3_000) }).catch(() => null);
      if (health?.status === 200) return;
      await sleep(100);
    }
    throw new TimeoutError(`machine ${machine.id} to report healthy`, timeoutMs);
  }

  /** Waits for the pre-bundling runs this provider started (for tests and an orderly stop). */
  async prebundlesMade(): Promise<void> {
    await Promise.all([...this.prebundling.values()]);
  }

  /** Keeps the spawned machine's exit for `exited`, and records it in its folder for the other processes of this host. */
  private watchExit(sessionId: string, child: ChildProcess, pid: number): void {
    const exit = new Promise<Pick<MachineExit, 'code' | 'signal'>>((resolve) => {
      child.once('exit', (code, signal) => {
        const how = exitOfLaunch(code, signal);
        // The folder is gone once the machine was destroyed: nothing to record then.
        void writeFile(join(this.sessionDir(sessionId), EXIT_FILE), JSON.stringify({ pid, ...how }))
          .catch(() => undefined)
          .finally(() => {
            if (this.running.get(sessionId)?.pid === pid) this.running.delete(sessionId);
            resolve(how);
          });
      });
    });
    this.running.set(sessionId, { pid, exit });
  }

  private sandboxedLaunch(machine: MachineRun, runDir: string): MachineLaunch {
    if (!this.bwrap) throw new Error('No bwrap to run a sandboxed machine');
    return bubblewrapLaunch(this.bwrap, machine, { runDir, apiDir: this.apiDir });
  }

  /**
   * The machine's work folder, (unsandboxed) home and (sandboxed) run folder,
   * owned by the user it runs as; a socket of an earlier machine of the session
   * is removed. That user must reach them through the provider's folder, which
   * it may pass but not list. The api's socket folder must exist for the
   * sandbox to show it (the api makes it too; mode 0755, like the api does).
   */
  private async machineFolders(sessionDir: string): Promise<{ workDir: string; homeDir: string; runDir: string }> {
    const workDir = join(sessionDir, 'work');
    const homeDir = join(sessionDir, 'home');
    const runDir = join(sessionDir, 'run');
    const folders = this.isolation === 'none' ? [workDir, homeDir] : [workDir, runDir];
    await rm(join(sessionDir, MACHINE_SOCKET_NAME), { force: true });
    await rm(runDir, { recursive: true, force: true });
    for (const folder of folders) {
      await mkdir(folder, { recursive: true, mode: 0o700 });
      if (this.user) await chown(folder, this.user.uid, this.user.gid);
    }
    if (this.apiDir) await mkdir(this.apiDir, { recursive: true, mode: 0o755 });
    if (this.user) await allowPassing(this.dir);
    return { workDir, homeDir, runDir };
  }

  /**
   * A sandboxed machine makes its socket in its run folder, which it may
   * write: it could as well put there a symlink to any socket of the host,
   * which the edge (and this provider) would then connect to. So the host
   * reaches the machine only through a hard link in the session's folder,
   * which the machine cannot write: made here, and kept only when it names a
   * socket (link() does not follow a symlink; a machine can link nothing from
   * another mount into its run folder). The link is made under a name of its
   * own and renamed into place once checked, so the trusted path never names
   * anything else, not even for a moment. True once the link is there.
   */
  private async linkMachineSocket(sessionId: string): Promise<boolean> {
    const trusted = this.socketPathOf(sessionId);
    if (await isSocket(trusted)) return true;
    const candidate = `${trusted}.${randomBytes(6).toString('hex')}`;
    try {
      // Fails when the machine has not made its socket yet.
      await link(join(this.sessionDir(sessionId), 'run', MACHINE_SOCKET_NAME), candidate);
      // A symlink (or any other file) where its socket belongs is not the machine's server.
      if (!(await isSocket(candidate))) return false;
      await rename(candidate, trusted);
      return true;
    } catch {
      return false;
    } finally {
      await rm(candidate, { force: true });
    }
  }

  /** The host's path to a sandboxed machine's socket (see linkMachineSocket). */
  private socketPathOf(sessionId: string): string {
    return join(this.sessionDir(sessionId), MACHINE_SOCKET_NAME);
  }

  private toMachine(p: MachineProcess): Machine {
    const url = p.port === undefined ? unixSocketUrl(this.socketPathOf(p.sessionId)) : `http://127.0.0.1:${p.port}`;
    return { id: machineIdOf(p.sessionId), sessionId: p.sessionId, url, state: 'started' };
  }

  /** What the machine said last (see `lastSaid`), shortened; '' when it printed nothing. */
  private async lastOutputLine(sessionId: string): Promise<string> {
    const text = await readFile(join(this.sessionDir(sessionId), 'container.log'), 'utf8').catch(() => '');
    const line = lastSaid(text);
    return line.length > LAST_OUTPUT_MAX ? `${line.slice(0, LAST_OUTPUT_MAX)}…` : line;
  }

  private sessionDir(sessionId: string): string {
    if (!/^[0-9a-f-]{36}$/i.test(sessionId)) throw new Error(`Not a session id: ${sessionId}`);
    return join(this.dir, sessionId);
  }
}

const machineIdOf = (sessionId: string) => `local-${sessionId}`;
const sessionIdOf = (machineId: string) => machineId.replace(/^local-/, '');

/** A `ps -eo pid=,pidns=,args=` line of a machine: its markers, and the PID namespace it runs in. */
interface ParsedProcess extends MachineProcess {
  pidns: string;
  dir: string;
}

function parseProcess(line: string): ParsedProcess | null {
  const [pidText, pidns] = line.trim().split(/\s+/, 2);
  const pid = Number(pidText);
  const sessionId = line.match(/ --vp-machine=([0-9a-f-]{36})(?= |$)/i)?.[1];
  const port = Number(line.match(/ --vp-port=(\d+)(?= |$)/)?.[1]);
  const onSocket = / --vp-socket(?= |$)/.test(line);
  // The last marker: the provider folder may hold spaces.
  const dir = line.match(/ --vp-dir=(.+)$/)?.[1];
  if (!pid || !pidns || !sessionId || !dir || (!port && !onSocket)) return null;
  return { pid, pidns, sessionId, dir, ...(onSocket ? {} : { port }) };
}

let pidNamespace: string | null | undefined;

/** This process's PID namespace as `ps -o pidns` prints it (an inode number); null where there is none to read. */
function ownPidNamespace(): string | null {
  if (pidNamespace === undefined) {
    try {
      pidNamespace = readlinkSync('/proc/self/ns/pid').match(/\[(\d+)\]/)?.[1] ?? null;
    } catch {
      pidNamespace = null;
    }
  }
  return pidNamespace;
}

/** Whether any process of group `pgid` is left, zombies included (a process of another user counts). */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether a process of group `pgid` still runs. A zombie does not: it has
 * ended, and waits for its parent to reap it (bwrap's init, once the bwrap
 * above it is gone, waits for the host's init, which may take seconds).
 */
async function groupRunning(pgid: number): Promise<boolean> {
  if (!groupAlive(pgid)) return false;
  const pids = await readdir('/proc').catch(() => null);
  if (!pids) return true; // no /proc to tell zombies by
  for (const pid of pids.filter((name) => /^\d+$/.test(name))) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z') return true;
  }
  return false;
}

/**
 * SIGTERM to the machine's process group, SIGKILL after 3 s; resolves once
 * no process of the group runs (or 2 s after SIGKILL). The group holds Vite's helpers,
 * and, sandboxed, bwrap's init: when it dies, the kernel ends everything
 * left in the sandbox's PID namespace.
 */
async function stopProcessGroup(pgid: number): Promise<void> {
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(-pgid, sig);
    } catch {
      // already gone
    }
  };
  signal('SIGTERM');
  if (await groupGone(pgid, 3000)) return;
  signal('SIGKILL');
  await groupGone(pgid, 2000);
}

async function groupGone(pgid: number, timeoutMs: number): Promise<boolean> {
  for (let waited = 0; waited < timeoutMs; waited += 50) {
    if (!(await groupRunning(pgid))) return true;
    await sleep(50);
  }
  return !(await groupRunning(pgid));
}

/**
 * A warm-pool machine starts at a lower priority, every process and thread of
 * it (`nice` execs the launch; setting it after the spawn would miss the
 * threads already started). See `restorePriority`.
 */
function inBackground(launch: MachineLaunch, background?: boolean): MachineLaunch {
  if (!background) return launch;
  return { ...launch, file: findExecutable('nice') ?? 'nice', args: ['-n', String(BACKGROUND_NICENESS), launch.file, ...launch.args] };
}

/** Lets other users pass through `dir` (not list it): the machines' user reaches its own folder inside. */
async function allowPassing(dir: string): Promise<void> {
  const { mode } = await stat(dir);
  if ((mode & 0o001) === 0) await chmod(dir, (mode & 0o7777) | 0o001);
}

/**
 * How the machine's program ended, from how its launch did: bwrap (and a
 * shell) reports a program ended by a signal as exit code 128 + the signal's number.
 */
function exitOfLaunch(code: number | null, signal: NodeJS.Signals | null): Pick<MachineExit, 'code' | 'signal'> {
  const bySignal = code !== null && code > 128 ? Object.entries(constants.signals).find(([, number]) => number === code - 128)?.[0] : undefined;
  return bySignal ? { code: null, signal: bySignal } : { code, signal };
}

/** Its last line of output as an exit's reason says it: at most this many characters. */
const LAST_OUTPUT_MAX = 500;

/**
 * The last line of a machine's output that says something: a crash's error
 * line rather than its stack frames and node's version line after them; a log
 * line (JSON) as its message and error.
 */
export function lastSaid(output: string): string {
  const lines = output.split('\n').map((line) => line.trim()).filter((line) => line && !/^(at .+|Node\.js v\d\S*)$/.test(line));
  const line = lines.at(-1) ?? '';
  if (!line.startsWith('{')) return line;
  try {
    const { msg, err, reason } = JSON.parse(line) as { msg?: unknown; err?: { message?: unknown }; reason?: unknown };
    const why = typeof err?.message === 'string' ? err.message : typeof reason === 'string' ? reason : undefined;
    return typeof msg === 'string' ? [msg, why].filter(Boolean).join(': ') : line;
  } catch {
    return line;
  }
}

/** `promise`, or the signal's reason once it aborts. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

async function answers(url: string, signal: AbortSignal): Promise<boolean> {
  return requestText(url, { signal: AbortSignal.any([signal, AbortSignal.timeout(1000)]) }).then(
    () => true,
    () => false,
  );
}

/** Whether `path` is a socket itself (a symlink to one is not). */
async function isSocket(path: string): Promise<boolean> {
  return (await lstat(path).catch(() => null))?.isSocket() ?? false;
}
