import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, linkSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { DEPENDENCY_FILES } from '@velocity/contracts';

/**
 * A real npm registry for tests: Verdaccio serving, without uplinks, a storage
 * folder that `npm run test-registry` (scripts/test-registry.ts) filled once
 * from the public registry. Tests install users' dependencies from it and never
 * reach registry.npmjs.org.
 */

export const REPO_ROOT = join(__dirname, '..', '..', '..');
/** Committed fixtures: projects, and the scripts specs run as fake machines. */
export const FIXTURES_DIR = join(__dirname, '..', 'fixtures');
export const FIXTURE_PROJECTS_DIR = join(FIXTURES_DIR, 'projects');
export const CREATE_VITE_VERSION = '9.3.0';
/** create-vite@9.3.0's templates (`template-<name>` in its tarball). */
export const CREATE_VITE_TEMPLATES = [
  'vanilla', 'vanilla-ts', 'vue', 'vue-ts', 'react', 'react-ts', 'preact', 'preact-ts',
  'lit', 'lit-ts', 'svelte', 'svelte-ts', 'solid', 'solid-ts', 'qwik', 'qwik-ts',
] as const;
/**
 * Projects whose install fails against registry.npmjs.org too, and npm's error:
 * the test registry fails them the same way (prepare checks both).
 */
export const EXPECTED_INSTALL_FAILURES: Record<string, RegExp> = {
  'missing-package': /E404[\s\S]*velocity-no-such-package-9d1c/,
  // create-vite@9.3.0's qwik templates ask for @builder.io/qwik@^1.20.2; registry.npmjs.org's newest is 1.20.1.
  'create-vite/qwik': /ETARGET[\s\S]*@builder\.io\/qwik@\^1\.20\.2/,
  'create-vite/qwik-ts': /ETARGET[\s\S]*@builder\.io\/qwik@\^1\.20\.2/,
};
/** Written last by prepare: its presence means the storage is complete. */
const MARKER = 'prepared.json';
/** Bump when prepare changes what it puts in storage. */
const RECIPE = 'test-registry/3';
const PREPARE_HINT = 'run `npm run test-registry` (prepare) first';

const VERDACCIO_DIR = dirname(require.resolve('verdaccio/package.json', { paths: [REPO_ROOT] }));

export interface ProjectFile {
  path: string;
  content: Buffer;
}

export interface RunningRegistry {
  /** `http://127.0.0.1:<port>/` */
  url: string;
  /** Verdaccio's output (requests at level http). */
  logFile: string;
  stop(): Promise<void>;
}

/** The committed fixture projects (folder names under libs/testing/fixtures/projects). */
export function fixtureProjectNames(): string[] {
  return readdirSync(FIXTURE_PROJECTS_DIR, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
}

/**
 * Where prepare puts this set of fixtures' registry. Keyed by what decides the
 * storage's content (the fixtures' package.json and lockfiles, of every package
 * manager, create-vite's and Verdaccio's versions), not by their source files:
 * editing an app's code needs no new prepare, editing its dependencies does.
 */
export function testRegistryDir(): string {
  const hash = createHash('sha256');
  const verdaccioVersion = JSON.parse(readFileSync(join(VERDACCIO_DIR, 'package.json'), 'utf8')).version;
  hash.update(`${RECIPE}\0create-vite@${CREATE_VITE_VERSION}\0verdaccio@${verdaccioVersion}\0`);
  for (const name of fixtureProjectNames()) {
    for (const file of DEPENDENCY_FILES) {
      const path = join(FIXTURE_PROJECTS_DIR, name, file);
      if (existsSync(path)) hash.update(`${name}/${file}\0`).update(readFileSync(path)).update('\0');
    }
  }
  return join(testRegistryCache(), hash.digest('hex').slice(0, 16));
}

/**
 * Where prepared storages are kept: a cache of the user's, like npm's, shared by
 * every checkout (a fresh clone prepares nothing already prepared); each storage
 * is named by the hash of what it was made from. VP_TEST_REGISTRY_CACHE moves it.
 */
export function testRegistryCache(): string {
  return process.env.VP_TEST_REGISTRY_CACHE || join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'velocity-preview', 'test-registry');
}

export const storageDirOf = (registryDir: string) => join(registryDir, 'storage');
export const isPrepared = (registryDir: string) => existsSync(join(registryDir, MARKER));
export function markPrepared(registryDir: string, details: object): void {
  writeFileSync(join(registryDir, MARKER), JSON.stringify({ preparedAt: new Date().toISOString(), ...details }, null, 2));
}

function preparedStorage(): string {
  const dir = testRegistryDir();
  if (!isPrepared(dir)) throw new Error(`The test registry's storage is missing (${dir}): ${PREPARE_HINT}.`);
  return storageDirOf(dir);
}

/**
 * Runs Verdaccio as a child process on a free port of 127.0.0.1 and waits until
 * it answers. With `uplink`, it proxies registry.npmjs.org and caches what it
 * fetches into `storage` (prepare); without, it serves `storage` only.
 */
export async function runVerdaccio(options: {
  storage: string;
  workDir: string;
  uplink: boolean;
  /** Removed by the child itself when its parent dies without stop(). */
  removeWhenOrphaned?: boolean;
  timeoutMs?: number;
}): Promise<RunningRegistry> {
  const { storage, workDir, uplink, removeWhenOrphaned = false, timeoutMs = 30_000 } = options;
  mkdirSync(workDir, { recursive: true });
  const configFile = join(workDir, 'config.yaml');
  const logFile = join(workDir, 'verdaccio.log');
  // JSON is YAML. Nothing is published (no sign-up) and there is no web UI: less to start.
  const config = {
    storage,
    auth: { htpasswd: { file: join(workDir, 'htpasswd'), max_users: -1 } },
    uplinks: uplink ? { npmjs: { url: 'https://registry.npmjs.org/', timeout: '60s', max_fails: 5, maxage: '30m' } } : {},
    packages: { '**': uplink ? { access: '$all', publish: '$authenticated', proxy: 'npmjs' } : { access: '$all', publish: '$authenticated' } },
    web: { enable: false },
    log: { type: 'stdout', format: 'json', level: 'http' },
    server: { keepAliveTimeout: 60 },
  };
  writeFileSync(configFile, JSON.stringify(config, null, 2));

  // runServer gives an http.Server; we listen on port 0 ourselves (Verdaccio's
  // `listen` takes no port 0) and report the port over IPC. The child exits when
  // its parent goes away (IPC disconnect), so a killed test leaves no registry
  // (and, for a temp copy, no folder).
  const runner = `
    const { runServer } = require(process.argv[1]);
    process.on('disconnect', () => {
      if (process.argv[3]) require('fs').rmSync(process.argv[3], { recursive: true, force: true });
      process.exit(0);
    });
    runServer(process.argv[2]).then(
      (server) => server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port })),
      (error) => { console.error(error); process.exit(1); });`;
  const log = openSync(logFile, 'a');
  const child = spawn(process.execPath, ['-e', runner, VERDACCIO_DIR, configFile, removeWhenOrphaned ? workDir : ''], {
    stdio: ['ignore', log, log, 'ipc'],
    detached: true, // its own process group: stop() kills everything it started
    env: { ...process.env, NODE_ENV: 'production' }, // not Jest's `test`, which Verdaccio treats specially
  });
  closeSync(log);
  const stop = () => stopProcessGroup(child);
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`Verdaccio did not report its port within ${timeoutMs} ms (log: ${logFile})`)),
        timeoutMs,
      );
      child.once('message', (m: { port: number }) => (clearTimeout(timer), resolve(m.port)));
      child.once('exit', (code, signal) => (clearTimeout(timer), reject(new Error(`Verdaccio exited (${code ?? signal}) before listening:\n${tail(logFile)}`))));
      child.once('error', (error) => (clearTimeout(timer), reject(error)));
    });
    const url = `http://127.0.0.1:${port}/`;
    await waitForPing(url, timeoutMs, logFile);
    child.channel?.unref();
    child.unref();
    return { url, logFile, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * Starts the offline test registry: Verdaccio without uplinks on a hard-linked
 * copy of the prepared storage. Serving alone, Verdaccio still rewrites
 * `.verdaccio-db.json` in place at every start (not linked: it makes a new one),
 * and it would save packuments and tarballs by rename; so each start gets its
 * own copy, concurrent registries share nothing writable, and the prepared
 * storage stays as prepare left it.
 */
export async function startTestRegistry(): Promise<RunningRegistry> {
  return serveOffline(preparedStorage());
}

/** Verdaccio without uplinks on a hard-linked copy of `storage` (prepare checks its storage with it before marking it). */
export async function serveOffline(storage: string): Promise<RunningRegistry> {
  const workDir = mkdtempSync(join(tmpdir(), 'vp-test-registry-'));
  try {
    linkTree(storage, join(workDir, 'storage'), (name) => name !== '.verdaccio-db.json');
    const registry = await runVerdaccio({ storage: join(workDir, 'storage'), workDir, uplink: false, removeWhenOrphaned: true });
    return {
      ...registry,
      stop: async () => {
        await registry.stop();
        rmSync(workDir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    rmSync(workDir, { recursive: true, force: true });
    throw error;
  }
}

/**
 * The files of one create-vite template as create-vite writes them
 * (`_gitignore` → `.gitignore`, `_oxlintrc.json` → `.oxlintrc.json`), read from
 * the create-vite tarball in the prepared storage.
 */
export async function createViteTemplateFiles(name: string, storage = preparedStorage()): Promise<ProjectFile[]> {
  const tarball = join(storage, 'create-vite', `create-vite-${CREATE_VITE_VERSION}.tgz`);
  if (!existsSync(tarball)) throw new Error(`${tarball} is missing: ${PREPARE_HINT}.`);
  const prefix = `package/template-${name}/`;
  const renames: Record<string, string> = { _gitignore: '.gitignore', '_oxlintrc.json': '.oxlintrc.json' };
  const files = readTarGz(await readFile(tarball))
    .filter((entry) => entry.path.startsWith(prefix))
    .map(({ path, content }) => {
      const rel = path.slice(prefix.length);
      return { path: renames[rel] ?? rel, content };
    });
  if (files.length === 0) throw new Error(`create-vite@${CREATE_VITE_VERSION} has no template "${name}" (known: ${CREATE_VITE_TEMPLATES.join(', ')})`);
  return files.sort((a, b) => a.path.localeCompare(b.path));
}

/** The files of a committed fixture project, paths relative to its folder with `/`. */
export async function fixtureProjectFiles(name: string): Promise<ProjectFile[]> {
  const root = join(FIXTURE_PROJECTS_DIR, name);
  if (!existsSync(root)) throw new Error(`No fixture project "${name}" (known: ${fixtureProjectNames().join(', ')})`);
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  const files = await Promise.all(
    entries
      .filter((entry) => entry.isFile())
      .map(async (entry) => {
        const full = join(entry.parentPath, entry.name);
        return { path: relative(root, full).split(sep).join('/'), content: await readFile(full) };
      }),
  );
  return files.sort((a, b) => a.path.localeCompare(b.path));
}

/** Writes project files under `dir`. */
export function writeProjectFiles(dir: string, files: ProjectFile[]): void {
  for (const file of files) {
    mkdirSync(dirname(join(dir, file.path)), { recursive: true });
    writeFileSync(join(dir, file.path), file.content);
  }
}

/**
 * Runs npm with what every test install needs: this registry, the given cache
 * (a fresh one keeps the host's cache out), an empty npmrc next to it instead of
 * the host's, no scripts, no audit.
 */
export function runNpm(
  args: string[],
  options: { cwd: string; registry: string; cache: string; env?: NodeJS.ProcessEnv; timeoutMs?: number },
): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const { cwd, registry, cache, timeoutMs = 300_000 } = options;
  mkdirSync(cache, { recursive: true });
  const userconfig = join(cache, '..', 'npmrc-empty');
  if (!existsSync(userconfig)) writeFileSync(userconfig, '');
  // npm run-script exports npm_config_* (prefix, cache…) to its children: none may leak in.
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key)));
  Object.assign(env, {
    npm_config_registry: registry,
    npm_config_cache: cache,
    npm_config_userconfig: userconfig,
    npm_config_update_notifier: 'false',
    ...options.env,
  });
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn('npm', [...args, `--registry=${registry}`, `--cache=${cache}`, '--ignore-scripts', '--no-audit', '--no-fund'], { cwd, env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const timer = setTimeout(() => {
      stderr += `\n[runNpm] npm ${args.join(' ')} killed after ${timeoutMs} ms`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => (clearTimeout(timer), resolve({ code, stdout, stderr, ms: Date.now() - started })));
  });
}

/** Size in bytes and file count of a folder. */
export function folderSize(dir: string): { bytes: number; files: number } {
  let bytes = 0;
  let files = 0;
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    bytes += statSync(join(entry.parentPath, entry.name)).size;
    files++;
  }
  return { bytes, files };
}

function linkTree(from: string, to: string, keep: (name: string) => boolean): void {
  mkdirSync(to, { recursive: true });
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    if (!keep(entry.name)) continue;
    if (entry.isDirectory()) linkTree(join(from, entry.name), join(to, entry.name), keep);
    else if (entry.isFile()) linkSync(join(from, entry.name), join(to, entry.name));
  }
}

/** The files of a .tgz (ustar with pax path records, as npm pack writes). */
export function readTarGz(gz: Buffer): ProjectFile[] {
  const tar = gunzipSync(gz);
  const files: ProjectFile[] = [];
  let paxPath: string | undefined;
  for (let offset = 0; offset + 512 <= tar.length; ) {
    const header = tar.subarray(offset, offset + 512);
    if (header.every((byte) => byte === 0)) break;
    const field = (start: number, length: number) => header.subarray(start, start + length).toString('utf8').replace(/\0.*$/s, '');
    const size = parseInt(field(124, 12).trim() || '0', 8);
    const type = field(156, 1) || '0';
    const body = tar.subarray(offset + 512, offset + 512 + size);
    const prefix = field(345, 155);
    const name = prefix ? `${prefix}/${field(0, 100)}` : field(0, 100);
    if (type === 'x') paxPath = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(body.toString('utf8'))?.[1];
    else {
      if (type === '0') files.push({ path: paxPath ?? name, content: Buffer.from(body) });
      paxPath = undefined;
    }
    offset += 512 + Math.ceil(size / 512) * 512;
  }
  return files;
}

async function waitForPing(url: string, timeoutMs: number, logFile: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const response = await fetch(new URL('-/ping', url), { signal: AbortSignal.timeout(2_000) });
      if (response.ok) return;
      last = `HTTP ${response.status}`;
    } catch (error) {
      last = (error as Error).message;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`Verdaccio did not answer GET ${url}-/ping within ${timeoutMs} ms (last: ${last}; log: ${logFile})`);
}

async function stopProcessGroup(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const kill = (signal: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, signal);
    } catch {
      // already gone
    }
  };
  kill('SIGTERM');
  const timer = setTimeout(() => kill('SIGKILL'), 3_000);
  await exited;
  clearTimeout(timer);
}

function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}
