import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, lstatSync, readlinkSync } from 'node:fs';
import { delimiter, join, relative, sep } from 'node:path';

/**
 * How a local preview machine is contained. A machine runs code its project
 * brings (Vite runs the project's postcss.config.js, plugins and the like), so
 * it runs in a bubblewrap sandbox where it:
 * - sees no other process: a PID namespace and /proc of its own (no
 *   /proc/<pid>/environ of the services to read), and ipc, uts and cgroup
 *   namespaces of its own; it may not make user namespaces of its own;
 * - has a network namespace of its own with only `lo`: no route to any
 *   service of the host (Postgres, Redis, the api's port, other machines) nor
 *   beyond. It serves on a Unix socket in SANDBOX_RUN_DIR, its own folder of
 *   the host, which the host reaches through a hard link it checks (see
 *   LocalMachineProvider); it reaches the api on the api's Unix socket for
 *   machines (MACHINE_API_SOCKET, its folder shown read-only at
 *   SANDBOX_API_DIR), where the api serves the machine routes only, each behind
 *   the session's machine token;
 * - sees a read-only root of the system folders node needs, a few /etc files,
 *   and from the repo only the preview container's build (the built libs it
 *   imports included) and dependencies, at neutral paths (SANDBOX_APP_DIR);
 *   its work folder read-write at SANDBOX_WORK_DIR; a private tmpfs /tmp and
 *   HOME; a minimal read-only /dev;
 * - gets the allow-listed environment of `machineEnv`, nothing of the provider's;
 * - runs as an unprivileged user when the provider is root (the provider
 *   spawns bwrap as that user, so its uid outside is that user's too).
 *
 * Known limits:
 * - the host's Unix sockets are reachable where a machine sees them: only the
 *   api's for machines is shown (with its folder: nothing else belongs there);
 *   abstract Unix sockets belong to the network namespace, so none of the host's;
 * - it has no network at all: a project's code cannot fetch from the internet
 *   either (an npm registry, a CDN) while Vite runs it; the browser can;
 * - host paths show to a machine that looks for them: its mounts' in its
 *   /proc/self/mountinfo and in the arguments of its init (bwrap, pid 1), the
 *   provider folder's in its own arguments (the provider's markers); paths
 *   only, not what lies behind them;
 * - no seccomp filter, no limit on its CPU, memory or processes.
 */

/** Where the sandbox shows the repo's parts: no host path in what a machine serves (stack traces, error pages). */
export const SANDBOX_APP_DIR = '/opt/velocity';
/** The machine's work folder inside the sandbox (its WORK_DIR). */
export const SANDBOX_WORK_DIR = '/project';
/** The machine's HOME inside the sandbox: a private tmpfs. */
export const SANDBOX_HOME = '/home/machine';
/** Where a sandboxed machine makes its HTTP socket (it has no network): a folder of its own, shown from the host. */
export const SANDBOX_RUN_DIR = '/run/machine';
/** The name of a machine's HTTP socket in its run folder. */
export const MACHINE_SOCKET_NAME = 'http.sock';
/** Where a sandboxed machine sees the folder of the api's socket for machines (MACHINE_API_SOCKET), read-only. */
export const SANDBOX_API_DIR = '/run/vp-api';
/** Where a sandbox shows the project's installed dependencies (read-only), when it has a set of its own. */
export const SANDBOX_DEPENDENCIES_DIR = '/opt/dependencies/node_modules';
/** Where the sandbox shows a node binary that is not in the system folders (nvm and the like). */
const SANDBOX_NODE = '/opt/node/bin/node';
const SANDBOX_PATH = '/usr/local/bin:/usr/bin:/bin';

/**
 * What the preview container and Vite need from the repo besides the folder of
 * its built main: the built libs it imports (the build refers to them by
 * relative path; templates included), the dependencies, package.json (where
 * node looks up the module type).
 * The other builds and every source stay out of the sandbox.
 */
const REPO_PARTS = ['dist/libs/contracts', 'dist/libs/runtime', 'node_modules', 'package.json'];
/** npm-workspace links to the service's own apps and libs (api, provisioner…): hidden; the build does not use them. */
const WORKSPACE_LINKS = 'node_modules/@velocity';
const SYSTEM_DIRS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32'];
/** Name resolution, TLS roots, the time zone and the loader's cache; not the rest of /etc (keys, passwords, services' settings). */
const ETC_FILES = ['/etc/hosts', '/etc/resolv.conf', '/etc/nsswitch.conf', '/etc/host.conf', '/etc/gai.conf', '/etc/localtime', '/etc/ssl/certs', '/etc/ld.so.cache'];

/**
 * Namespaces of its own, the network's too: bwrap brings up only `lo` there,
 * so nothing of the host (its loopback services, other machines) can be
 * reached; the machine serves and reaches the api through Unix sockets
 * instead. No --die-with-parent: a machine outlives the provisioner that made
 * it. No --new-session: a machine has no terminal to reach (detached, output
 * to a file), and its processes stay in the group the provider signals.
 */
const NAMESPACES = [
  '--unshare-user',
  '--disable-userns',
  '--unshare-pid',
  '--unshare-ipc',
  '--unshare-uts',
  '--unshare-net',
  '--hostname',
  'preview',
  '--unshare-cgroup-try',
];

/** MACHINE_SANDBOX: `auto` (bubblewrap when it works here), `bubblewrap` (required), `none` (the operator allows unsandboxed machines). */
export type SandboxSetting = 'auto' | 'bubblewrap' | 'none';

/** A user and group id a machine runs as. */
export interface MachineUser {
  uid: number;
  gid: number;
}

/** One machine as the provider starts it. */
export interface MachineRun {
  /** Its program and arguments as the host sees them (host paths, markers included). */
  command: string[];
  /** Its work folder on the host. */
  workDir: string;
  /** Its HOME on the host, when it runs unsandboxed (a sandbox has a private one). */
  homeDir: string;
  /** What the provisioner gives it (MachineSpec.env). */
  env: Record<string, string>;
  repoRoot: string;
  /** The preview container's build folder, shown in a sandbox with the other repo parts. */
  programDir: string;
  /** Set when it must run as another user than this process (this process is root). */
  user?: MachineUser;
  /** The host folder of the project's installed dependencies (`node_modules`), when it has a set of its own. */
  dependenciesDir?: string;
}

/** The host folders of a sandboxed machine's sockets. */
export interface SandboxSockets {
  /** Shown read-write at SANDBOX_RUN_DIR: where the machine makes its HTTP socket. */
  runDir: string;
  /** The folder of the api's socket for machines, shown read-only at SANDBOX_API_DIR; none: the machine has no api. */
  apiDir?: string;
}

/** Where a machine's server listens: a loopback port (unsandboxed) or a Unix socket (sandboxed: it has no network). */
export type MachineListen = { port: number } | { socket: string };

/** What to spawn for a machine: `file args` in `cwd`, with exactly `env`, as `user`. */
export interface MachineLaunch {
  file: string;
  args: string[];
  cwd: string;
  env: Record<string, string>;
  user?: MachineUser;
}

/** The user machines run as: `ids` when this process is root (users' code never runs as root), else this process's own. */
export function machineUserOf(ids: MachineUser): MachineUser | undefined {
  return process.getuid?.() === 0 ? ids : undefined;
}

/**
 * A machine's whole environment: an allow-list. Nothing comes from the
 * provider's own environment, which holds the database URL, signing secrets
 * and operator passwords.
 */
export function machineEnv(
  own: Record<string, string>,
  place: { path: string; home: string; workDir: string; listen: MachineListen },
): Record<string, string> {
  return {
    PATH: place.path,
    HOME: place.home,
    LANG: 'C.UTF-8',
    NODE_ENV: 'development',
    // Vite's bundler (rolldown) hands freed memory back at once.
    MIMALLOC_PURGE_DELAY: '0',
    ...own,
    ...('socket' in place.listen ? { LISTEN_SOCKET: place.listen.socket } : { PORT: String(place.listen.port), HOST: '127.0.0.1' }),
    WORK_DIR: place.workDir,
  };
}

/** A machine in a bubblewrap sandbox, serving on a socket in its run folder; its command's repo paths become the sandbox's. */
export function bubblewrapLaunch(bwrap: string, run: MachineRun, sockets: SandboxSockets): MachineLaunch {
  const layout = sandboxLayout(run.repoRoot, run.programDir);
  const listen = { socket: join(SANDBOX_RUN_DIR, MACHINE_SOCKET_NAME) };
  return {
    file: bwrap,
    args: [...bubblewrapArgs(layout, run.workDir, sockets, run.dependenciesDir), '--', ...run.command.map(layout.insidePath)],
    // bwrap runs as the machine's user, who may not enter the provider's folder.
    cwd: '/',
    // Given to bwrap, which hands it on: never as --setenv, which every user of the host reads in `ps`.
    env: machineEnv(dependenciesEnv(run.env, run.dependenciesDir && SANDBOX_DEPENDENCIES_DIR), { path: SANDBOX_PATH, home: SANDBOX_HOME, workDir: SANDBOX_WORK_DIR, listen }),
    user: run.user,
  };
}

/** The machine's own environment, told where its dependencies are (NODE_MODULES_DIR) when it has a set of its own. */
function dependenciesEnv(env: Record<string, string>, nodeModulesDir: string | undefined): Record<string, string> {
  return nodeModulesDir ? { ...env, NODE_MODULES_DIR: nodeModulesDir } : env;
}

/** A machine as a plain process (MACHINE_SANDBOX=none, or no bubblewrap) on a loopback port: the same allow-listed environment and user. */
export function plainLaunch(run: MachineRun, port: number): MachineLaunch {
  const [file, ...args] = run.command;
  return {
    file,
    args,
    cwd: run.repoRoot,
    env: machineEnv(dependenciesEnv(run.env, run.dependenciesDir), { path: process.env.PATH ?? SANDBOX_PATH, home: run.homeDir, workDir: run.workDir, listen: { port } }),
    user: run.user,
  };
}

/** The repo parts and node binary as mounts, and how a host path of them reads inside. */
interface SandboxLayout {
  mounts: string[];
  insidePath: (hostPath: string) => string;
}

function sandboxLayout(repoRoot: string, programDir: string, nodePath = process.execPath): SandboxLayout {
  const nodeInside = inSystemDirs(nodePath) ? nodePath : SANDBOX_NODE;
  const parts = [relative(repoRoot, programDir), ...REPO_PARTS].map((part) => ({ host: join(repoRoot, part), inside: join(SANDBOX_APP_DIR, part) }));
  const insidePath = (hostPath: string) => {
    if (hostPath === nodePath) return nodeInside;
    const part = parts.find(({ host }) => hostPath === host || hostPath.startsWith(host + sep));
    return part ? join(SANDBOX_APP_DIR, relative(repoRoot, hostPath)) : hostPath;
  };
  const links = join(SANDBOX_APP_DIR, WORKSPACE_LINKS);
  const mounts = [
    // -try: a part not built yet is left out, so the probe still tells whether bubblewrap works
    // (the provider refuses to start a container that is not built).
    ...parts.flatMap(({ host, inside }) => ['--ro-bind-try', host, inside]),
    // An empty, read-only folder over the workspace links.
    ...(existsSync(join(repoRoot, WORKSPACE_LINKS)) ? ['--tmpfs', links, '--remount-ro', links] : []),
    ...(nodeInside === nodePath ? [] : ['--ro-bind', nodePath, nodeInside]),
  ];
  return { mounts, insidePath };
}

function inSystemDirs(path: string): boolean {
  return SYSTEM_DIRS.some((dir) => path.startsWith(dir + '/'));
}

/** bwrap's options for a machine whose work folder is `workDir` (none: an empty tmpfs, for the probe). */
function bubblewrapArgs(layout: SandboxLayout, workDir?: string, sockets?: SandboxSockets, dependenciesDir?: string): string[] {
  return [
    ...NAMESPACES,
    ...systemMounts(),
    ...layout.mounts,
    ...(workDir ? ['--bind', workDir, SANDBOX_WORK_DIR] : ['--tmpfs', SANDBOX_WORK_DIR]),
    ...(sockets ? ['--bind', sockets.runDir, SANDBOX_RUN_DIR] : []),
    // Read-only: a machine may connect to the api's socket (a socket needs no write access to its mount), not replace it.
    ...(sockets?.apiDir ? ['--ro-bind', sockets.apiDir, SANDBOX_API_DIR] : []),
    ...(dependenciesDir ? ['--ro-bind', dependenciesDir, SANDBOX_DEPENDENCIES_DIR] : []),
    ...['--tmpfs', '/tmp', '--tmpfs', SANDBOX_HOME],
    // /dev's device nodes (null, urandom…) stay writable; no other file can be made there.
    ...['--proc', '/proc', '--dev', '/dev', '--remount-ro', '/dev'],
    // Last: the root that holds the mount points becomes read-only too.
    ...['--remount-ro', '/'],
    ...['--chdir', SANDBOX_APP_DIR],
  ];
}

/** The system folders as the host has them (merged-/usr links stay links), and the /etc files, read-only. */
function systemMounts(): string[] {
  const dirs = SYSTEM_DIRS.flatMap((dir) => {
    const stat = lstatSync(dir, { throwIfNoEntry: false });
    if (!stat) return [];
    return stat.isSymbolicLink() ? ['--symlink', readlinkSync(dir), dir] : ['--ro-bind', dir, dir];
  });
  return [...dirs, ...ETC_FILES.flatMap((file) => ['--ro-bind-try', file, file])];
}

/** The full path of program `name` on PATH, or null. */
export function findExecutable(name: string, path = process.env.PATH ?? ''): string | null {
  for (const dir of path.split(delimiter).filter(Boolean)) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not in this folder
    }
  }
  return null;
}

const probed = new Map<string, string | null>();

/**
 * Why bubblewrap cannot run machines here, or null when it can: runs node
 * in the machines' sandbox, as their user, once per process.
 */
export function bubblewrapProblem(bwrap: string | null, repoRoot: string, programDir: string, user?: MachineUser): string | null {
  if (!bwrap) return 'bwrap is not installed (not found on PATH)';
  const key = JSON.stringify([bwrap, repoRoot, programDir, user]);
  if (!probed.has(key)) probed.set(key, probeBubblewrap(bwrap, repoRoot, programDir, user));
  return probed.get(key) ?? null;
}

function probeBubblewrap(bwrap: string, repoRoot: string, programDir: string, user?: MachineUser): string | null {
  const layout = sandboxLayout(repoRoot, programDir);
  const result = spawnSync(bwrap, [...bubblewrapArgs(layout), '--', layout.insidePath(process.execPath), '--version'], {
    cwd: '/',
    env: { PATH: SANDBOX_PATH },
    uid: user?.uid,
    gid: user?.gid,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 10_000,
  });
  if (result.error) return `${bwrap} could not run: ${result.error.message}`;
  if (result.status === 0) return null;
  const said = result.stderr.trim().split('\n')[0];
  return `${bwrap} failed (${result.signal ?? `exit ${result.status}`})${said ? `: ${said}` : ''}`;
}

/** How machines end up contained, and why not in a sandbox when they are not. */
export interface SandboxChoice {
  isolation: 'sandbox' | 'none';
  /** Why bubblewrap is not used (`auto` without a working bubblewrap); null otherwise. */
  problem: string | null;
}

/**
 * Applies MACHINE_SANDBOX: `auto` takes bubblewrap when it works, else none;
 * `bubblewrap` throws (one line naming the setting) when it does not work;
 * `none` never probes.
 */
export function chooseSandbox(setting: SandboxSetting, problemOf: () => string | null): SandboxChoice {
  if (setting === 'none') return { isolation: 'none', problem: null };
  const problem = problemOf();
  if (problem === null) return { isolation: 'sandbox', problem: null };
  if (setting === 'bubblewrap') {
    throw new Error(`MACHINE_SANDBOX=bubblewrap, but bubblewrap cannot run machines here: ${problem} (install bubblewrap, or set MACHINE_SANDBOX=none to allow unsandboxed machines)`);
  }
  return { isolation: 'none', problem };
}
