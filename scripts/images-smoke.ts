import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Redis from 'ioredis';
import type { Browser } from 'playwright-core';
import { stringify } from 'yaml';
import type { SessionEvent } from '@velocity/contracts';
import { deleteKeysWithPrefix, dropDatabase } from '@velocity/ops';
import { requestText } from '@velocity/runtime';
import { signToken } from '@velocity/testing';
import { clickCounter, counterText, launchBrowser, openWatched, waitForHeading, type WatchedPage } from '../apps/e2e/src/browser';
import { eventsUntilTerminal } from '../apps/e2e/src/system';

/**
 * `npm run images:smoke [-- --no-build]`: builds the four images (the Dockerfile's stages) with
 * podman and runs the system from them: one pod on the host's network (podman-compose 1.0
 * cannot run compose's `network_mode: service:`) with the migration as its init container,
 * then the api, a provisioner and cleanup, in production mode with secrets of the run's own,
 * on this machine's Postgres and Redis. A session of a React project becomes ready, and its page
 * in Chromium has React Fast Refresh: an edit through the api updates it in place. The
 * preview-container image (what Fly machines run) answers on its own, in Vite's development mode.
 * Everything it starts or makes is removed at the end. Last line: `images smoke: passed`, or
 * `images smoke: failed: <why>` (exit 1). Runs as root (podman; the base image script).
 * --no-build: use the images of the last run.
 */

const ROOT = resolve(__dirname, '..');
const APPS = ['api', 'provisioner', 'cleanup', 'preview-container'] as const;
type App = (typeof APPS)[number];
/** Built locally by make-base-image.sh where no container registry is reachable. */
const BASE_IMAGE = 'docker.io/library/node:20-bookworm-slim';
const API_PORT = 3950;
const PROVISIONER_OPS_PORT = 9151;
const CLEANUP_OPS_PORT = 9152;
const MACHINE_PORT = 3953;
const POSTGRES_URL = process.env.IMAGES_SMOKE_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432';
const REDIS_URL = process.env.IMAGES_SMOKE_REDIS_URL ?? 'redis://127.0.0.1:6379';
const SYSTEM_READY_TIMEOUT_MS = 90_000;
const SESSION_READY_TIMEOUT_MS = 90_000;
const MACHINE_READY_TIMEOUT_MS = 30_000;
const HOT_UPDATE_TIMEOUT_MS = 15_000;
const HEADING = 'Hello from Velocity Preview';
const EDITED_HEADING = 'Hello from the images smoke';

const imageOf = (app: App) => `localhost/velocity-${app}:smoke`;

/** What one run makes, so that teardown removes exactly that. */
interface Run {
  id: string;
  databaseUrl: string;
  queuePrefix: string;
  pod: string;
  /** Build logs and the pod's YAML (which holds the run's secrets); kept when the run fails. */
  workDir: string;
  machineTokenSecret: string;
  jwtSecret: string;
}

const started = Date.now();
const log = (message: string) => console.log(`[images-smoke] ${((Date.now() - started) / 1000).toFixed(1)} s ${message}`);

function newRun(): Run {
  const id = randomBytes(4).toString('hex');
  return {
    id,
    databaseUrl: `${POSTGRES_URL}/vp_images_smoke_${id}`,
    queuePrefix: `vp-images-${id}`,
    pod: `vp-images-${id}`,
    workDir: mkdtempSync(join(tmpdir(), `vp-images-${id}-`)),
    machineTokenSecret: randomBytes(32).toString('hex'),
    jwtSecret: randomBytes(32).toString('hex'),
  };
}

// ---- Commands

interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function command(file: string, args: string[], options: { logFile?: string; inherit?: boolean } = {}): Promise<CommandResult> {
  return new Promise((resolvePromise) => {
    const child = spawn(file, args, { cwd: ROOT, stdio: options.inherit ? 'inherit' : ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (chunk) => (stdout += chunk));
    child.stderr?.on('data', (chunk) => (stderr += chunk));
    child.on('error', (err) => resolvePromise({ code: null, stdout, stderr: `${stderr}${err.message}` }));
    child.on('close', (code) => {
      if (options.logFile) writeFileSync(options.logFile, `${stdout}${stderr}`);
      resolvePromise({ code, stdout, stderr });
    });
  });
}

const lastLines = (text: string, count: number) => text.trimEnd().split('\n').slice(-count).join('\n');

/** Runs podman; throws with the end of its output when it fails. */
async function podman(args: string[], logFile?: string): Promise<string> {
  const result = await command('podman', args, { logFile });
  if (result.code !== 0) {
    const where = logFile ? ` (whole output: ${logFile})` : '';
    throw new Error(`podman ${args.slice(0, 2).join(' ')} exited with ${result.code}${where}: ${lastLines(`${result.stdout}\n${result.stderr}`, 15)}`);
  }
  return result.stdout.trim();
}

// ---- Images

/** make-base-image.sh beside the repository (../shared/tools), else BASE_IMAGE_SCRIPT. */
function baseImageScript(): string {
  const beside = resolve(ROOT, '..', 'shared', 'tools', 'make-base-image.sh');
  if (existsSync(beside)) return beside;
  if (process.env.BASE_IMAGE_SCRIPT) return process.env.BASE_IMAGE_SCRIPT;
  throw new Error(`${BASE_IMAGE} is not here and neither is ${beside}: set BASE_IMAGE_SCRIPT to the script that makes it`);
}

async function ensureBaseImage(): Promise<void> {
  if ((await command('podman', ['image', 'exists', BASE_IMAGE])).code === 0) return;
  const script = baseImageScript();
  log(`${BASE_IMAGE} missing: running ${script}`);
  const result = await command('bash', [script], { inherit: true });
  if (result.code !== 0) throw new Error(`${script} exited with ${result.code}`);
}

async function imageId(image: string): Promise<string | null> {
  const result = await command('podman', ['image', 'inspect', '--format', '{{.Id}}', image]);
  return result.code === 0 ? result.stdout.trim() : null;
}

/** One after the other: the first builds the shared build stage, the others find it in the layer cache. */
async function buildImages(run: Run): Promise<void> {
  for (const app of APPS) {
    const before = Date.now();
    const previous = await imageId(imageOf(app));
    await podman(['build', '--network=host', '--target', app, '-t', imageOf(app), '.'], join(run.workDir, `build-${app}.log`));
    // The image this tag named before, now untagged: removed, unless something still uses it.
    if (previous && previous !== (await imageId(imageOf(app)))) await command('podman', ['rmi', previous]);
    log(`built ${imageOf(app)} in ${((Date.now() - before) / 1000).toFixed(0)} s`);
  }
}

async function imageSizes(): Promise<string[]> {
  return Promise.all(
    APPS.map(async (app) => {
      const bytes = Number((await command('podman', ['image', 'inspect', '--format', '{{.Size}}', imageOf(app)])).stdout.trim());
      return `${imageOf(app).padEnd(42)} ${bytes ? `${Math.round(bytes / 1e6)} MB` : 'not built'}`;
    }),
  );
}

// ---- Checks of single images

/**
 * The provisioner's image can sandbox machines with bubblewrap where the container allows
 * it (/proc unmasked, no seccomp filter: what compose sets; the provider checks it at start),
 * and holds bun's binary, the one package its Dockerfile stage names by hand (`--package bun`): the
 * provisioner computes its name, `@oven/bun-<os>-<arch>`, as here.
 */
async function checkProvisionerImage(run: Run): Promise<void> {
  const probe = `const { LocalMachineProvider } = require('./dist/libs/machines/src');
const arch = { x64: 'x64', arm64: 'aarch64' }[process.arch] ?? process.arch;
const bun = require.resolve(\`@oven/bun-\${process.platform}-\${arch}/package.json\`).replace(/package\\.json$/, 'bin/bun');
const version = require('node:child_process').execFileSync(bun, ['--version'], { encoding: 'utf8' }).trim();
console.log(new LocalMachineProvider({ dir: '/tmp/machines', sandbox: 'bubblewrap' }).isolation, version);`;
  const name = `${run.pod}-provisioner-check`;
  const output = await podman(['run', '--rm', '--name', name, '--network=none', '--security-opt', 'unmask=ALL', '--security-opt', 'seccomp=unconfined', imageOf('provisioner'), 'node', '-e', probe]);
  const [isolation, bunVersion] = output.split(' ');
  if (isolation !== 'sandbox' || !bunVersion) throw new Error(`the provisioner image: ${output}`);
  log(`provisioner image: bubblewrap sandboxes machines where the container allows it; bun ${bunVersion} runs`);
}

/**
 * The preview-container image as Fly runs it (its own PORT/HOST defaults but the port): a
 * pooled machine serves its template with Vite in development mode (React Fast Refresh's preamble).
 */
async function checkMachineImage(run: Run): Promise<void> {
  const name = `${run.pod}-machine`;
  const routeId = randomUUID();
  await podman(['run', '-d', '--name', name, '--network=host', '-e', `PORT=${MACHINE_PORT}`, '-e', `ROUTE_ID=${routeId}`, '-e', `POOL_CLAIM_TOKEN=${randomBytes(16).toString('hex')}`, imageOf('preview-container')]);
  try {
    // Over IPv6 loopback: HOST=:: is how Fly's network reaches a machine.
    const base = `http://[::1]:${MACHINE_PORT}`;
    await waitFor(`the preview-container image's /health on ${base}`, MACHINE_READY_TIMEOUT_MS, async () => (await requestText(`${base}/health`).catch(() => null))?.status === 200, () => containerProblem(name));
    const page = await requestText(`${base}/`, { headers: { host: `${routeId}.localhost:${MACHINE_PORT}` } });
    if (page.status !== 200 || !page.body.includes('/@react-refresh')) {
      throw new Error(`the preview-container image's page has no React Fast Refresh (status ${page.status}): is Vite in production mode?`);
    }
    log('preview-container image: serves its template with React Fast Refresh on [::1]');
  } finally {
    await podman(['rm', '-f', '-t', '2', name]);
  }
}

// ---- The system in one pod

function podSpec(run: Run): object {
  const env: Record<string, string> = {
    NODE_ENV: 'production',
    DATABASE_URL: run.databaseUrl,
    REDIS_URL,
    QUEUE_PREFIX: run.queuePrefix,
    API_HOST: '127.0.0.1',
    API_PORT: String(API_PORT),
    PUBLIC_URL: `http://127.0.0.1:${API_PORT}`,
    API_INTERNAL_URL: `http://127.0.0.1:${API_PORT}`,
    LOCAL_MACHINES_DIR: '/app/.velocity/machines',
    MACHINE_TOKEN_SECRET: run.machineTokenSecret,
    SUPABASE_JWT_SECRET: run.jwtSecret,
    METRICS_HOST: '127.0.0.1',
    PROVISIONER_METRICS_PORT: String(PROVISIONER_OPS_PORT),
    CLEANUP_METRICS_PORT: String(CLEANUP_OPS_PORT),
  };
  const container = (name: string, app: App, commandLine?: string[]) => ({
    name,
    image: imageOf(app),
    ...(commandLine ? { command: commandLine } : {}),
    env: Object.entries(env).map(([key, value]) => ({ name: key, value })),
    volumeMounts: [{ name: 'machines', mountPath: '/app/.velocity' }],
  });
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    // `always`: the migration's container stays after it ran, so its output can be read.
    metadata: { name: run.pod, annotations: { 'io.podman.annotations.init.container.type': 'always' } },
    spec: {
      // Like compose's network_mode/pid `service:api`: machines listen on the host's loopback, which
      // the api's edge reaches, and provisioner and cleanup see each other's machines in one process table.
      hostNetwork: true,
      shareProcessNamespace: true,
      restartPolicy: 'Never',
      initContainers: [container('migrate', 'api', ['node', 'dist/apps/api/src/migrate.js'])],
      containers: [container('api', 'api'), container('provisioner', 'provisioner'), container('cleanup', 'cleanup')],
      volumes: [{ name: 'machines', emptyDir: {} }],
    },
  };
}

async function startPod(run: Run): Promise<void> {
  const file = join(run.workDir, 'pod.yaml');
  writeFileSync(file, stringify(podSpec(run)), { mode: 0o600 });
  await podman(['play', 'kube', file]).catch(async (err) => {
    const migrate = await command('podman', ['logs', '--tail', '5', `${run.pod}-migrate`]);
    throw new Error(`${err.message}; the migration said: ${lastLines(`${migrate.stdout}${migrate.stderr}`, 5) || 'nothing'}`);
  });
  log(`pod ${run.pod} up: ${(await podman(['logs', `${run.pod}-migrate`])).split('\n').filter((line) => line.includes('migrat')).map(messageOf).join('; ')}`);
}

/** The pod's process namespace (`pid:[…]`): every process of the pod, machines included, lives in it. */
async function podPidNamespace(run: Run): Promise<string> {
  const infra = await podman(['pod', 'inspect', '--format', '{{.InfraContainerID}}', run.pod]);
  const pid = await podman(['inspect', '--format', '{{.State.Pid}}', infra]);
  return readlinkSync(`/proc/${pid}/ns/pid`);
}

function processesIn(namespace: string): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        return readlinkSync(`/proc/${pid}/ns/pid`) === namespace;
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** A container of the pod that is no longer running, with the end of its output; null while all run. */
async function podProblem(run: Run): Promise<string | null> {
  for (const name of ['api', 'provisioner', 'cleanup'].map((app) => `${run.pod}-${app}`)) {
    const problem = await containerProblem(name);
    if (problem) return problem;
  }
  return null;
}

async function containerProblem(name: string): Promise<string | null> {
  const state = await command('podman', ['inspect', '--format', '{{.State.Status}} {{.State.ExitCode}}', name]);
  if (state.code === 0 && state.stdout.startsWith('running')) return null;
  const logs = await command('podman', ['logs', '--tail', '8', name]);
  return `${name} is ${state.stdout.trim() || 'gone'}: ${lastLines(`${logs.stdout}${logs.stderr}`, 8)}`;
}

/** Polls `check` until it holds; throws naming what it waited for, or what `problem` found broken meanwhile. */
async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>, problem: () => Promise<string | null>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0; Date.now() < deadline; attempt++) {
    if (await check()) return;
    if (attempt % 4 === 3) {
      const broken = await problem();
      if (broken) throw new Error(`while waiting for ${what}: ${broken}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}${await problem().then((p) => (p ? `; ${p}` : ''))}`);
}

async function waitForSystem(run: Run): Promise<void> {
  const endpoints = [`http://127.0.0.1:${API_PORT}/ready`, `http://127.0.0.1:${PROVISIONER_OPS_PORT}/ready`, `http://127.0.0.1:${CLEANUP_OPS_PORT}/ready`];
  const ready = async (url: string) => (await requestText(url).catch(() => null))?.status === 200;
  await waitFor(`/ready of api, provisioner and cleanup (${endpoints.join(', ')})`, SYSTEM_READY_TIMEOUT_MS, async () => (await Promise.all(endpoints.map(ready))).every(Boolean), () => podProblem(run));
  const isolation = (await podman(['logs', `${run.pod}-provisioner`])).split('\n').find((line) => line.includes('machine isolation'));
  log(`api, provisioner and cleanup ready; ${isolation ? messageOf(isolation) : 'the provisioner did not say how machines are isolated'}`);
}

/** The `msg` of a JSON log line (with its `sandboxProblem` or `applied`, when it has one). */
function messageOf(line: string): string {
  try {
    const entry = JSON.parse(line);
    const detail = entry.sandboxProblem ?? (entry.applied?.length ? `${entry.applied.length} applied` : undefined);
    return detail ? `${entry.msg} (${detail})` : entry.msg;
  } catch {
    return line;
  }
}

// ---- A session through the api, and its page in Chromium

class Api {
  constructor(
    private readonly base: string,
    readonly headers: Record<string, string>,
  ) {}

  async call(method: string, path: string, expected: number, body?: unknown): Promise<any> {
    const res = await fetch(`${this.base}${path}`, {
      method,
      headers: { ...this.headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (res.status !== expected) throw new Error(`${method} ${path} answered ${res.status}, not ${expected}: ${text.slice(0, 300)}`);
    return text && res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : text;
  }
}

async function readySession(run: Run, api: Api): Promise<{ projectId: string; previewUrl: string }> {
  const project = await api.call('POST', '/v1/projects', 201, { name: 'images smoke', templateType: 'react' });
  const session = await api.call('POST', '/v1/sessions', 202, { projectId: project.id });
  const { events } = await eventsUntilTerminal(`http://127.0.0.1:${API_PORT}`, session.sessionId, SESSION_READY_TIMEOUT_MS, api.headers);
  const last = events.at(-1) as SessionEvent;
  if (last.type !== 'ready') throw new Error(`session ${session.sessionId} ended with ${JSON.stringify(last)}; ${(await podProblem(run)) ?? 'the pod still runs'}`);
  log(`session ready: ${last.previewUrl}`);
  return { projectId: project.id, previewUrl: last.previewUrl };
}

/** The page runs React Fast Refresh, and an edit through the api updates it in place, its state kept. */
async function checkFastRefresh(browser: Browser, api: Api, projectId: string, previewUrl: string): Promise<void> {
  const watched = await openWatched(browser, previewUrl);
  try {
    await waitForHeading(watched.page, HEADING);
    const refresh = await watched.page.evaluate(() => ({
      hook: typeof (window as any).$RefreshReg$ === 'function',
      runtime: performance.getEntriesByType('resource').some((entry) => new URL(entry.name).pathname === '/@react-refresh'),
    }));
    if (!refresh.hook || !refresh.runtime) throw new Error(`the page has no React Fast Refresh ($RefreshReg$ set: ${refresh.hook}, /@react-refresh loaded: ${refresh.runtime})`);
    await clickCounter(watched.page, 2);
    const app = await api.call('GET', `/v1/projects/${projectId}/files/src/App.jsx`, 200);
    await api.call('PUT', `/v1/projects/${projectId}/files/src/App.jsx`, 200, { content: String(app).replace(HEADING, EDITED_HEADING) });
    await waitForHeading(watched.page, EDITED_HEADING, HOT_UPDATE_TIMEOUT_MS).catch((err) => {
      throw new Error(`the edit of src/App.jsx did not reach the page within ${HOT_UPDATE_TIMEOUT_MS / 1000} s: ${err.message}`);
    });
    checkHotUpdate(watched, await counterText(watched.page));
    log('page: React Fast Refresh live; an edit through the api updated it in place (state kept, no reload)');
  } finally {
    await watched.close();
  }
}

function checkHotUpdate(watched: WatchedPage, counter: string): void {
  const problems = [
    ...(counter === 'count is 2' ? [] : [`the counter reads "${counter}" after the edit, not "count is 2": the state was lost`]),
    ...(watched.reloads === 0 ? [] : [`the page reloaded ${watched.reloads} time(s) instead of a hot update`]),
    ...(watched.hmrMessages.some((m) => m.type === 'update') ? [] : ['no HMR update reached the page']),
    ...watched.failures.map((f) => `request failed: ${f}`),
    ...watched.errors,
  ];
  if (problems.length > 0) throw new Error(problems.join('; '));
}

// ---- Teardown

async function deleteKeys(prefix: string): Promise<number> {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 2 });
  let left = 0;
  try {
    await deleteKeysWithPrefix(redis, prefix);
    left = (await redis.scan('0', 'MATCH', `${prefix}*`, 'COUNT', 100_000))[1].length;
  } finally {
    redis.disconnect();
  }
  return left;
}

/** Removes the pod and checks that none of its processes (machines included) outlived it. */
async function removePod(run: Run, namespace: string | null): Promise<void> {
  await podman(['pod', 'rm', '--ignore', '-f', '-t', '5', run.pod]);
  if (!namespace) return;
  const left = processesIn(namespace);
  if (left.length > 0) {
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    throw new Error(`${left.length} process(es) of the pod outlived it (killed): ${left.join(', ')}`);
  }
}

async function leftovers(run: Run): Promise<string[]> {
  const containers = await podman(['ps', '-a', '--filter', `name=${run.pod}`, '--format', '{{.Names}}']);
  const pods = await podman(['pod', 'ls', '--filter', `name=${run.pod}`, '--format', '{{.Name}}']);
  return [...containers.split('\n'), ...pods.split('\n')].filter(Boolean);
}

async function teardown(run: Run, steps: { name: string; undo: () => Promise<void> }[]): Promise<string[]> {
  const errors: string[] = [];
  for (const step of steps.reverse()) await step.undo().catch((err) => errors.push(`${step.name}: ${err instanceof Error ? err.message : String(err)}`));
  const left = await leftovers(run).catch((err) => [String(err)]);
  if (left.length > 0) errors.push(`left behind: ${left.join(', ')}`);
  return errors;
}

// ---- The run

async function smoke(run: Run, undo: { name: string; undo: () => Promise<void> }[]): Promise<void> {
  await ensureBaseImage();
  if (process.argv.includes('--no-build')) log('using the images of the last build (--no-build)');
  else await buildImages(run);
  await checkProvisionerImage(run);
  await checkMachineImage(run);

  undo.push({ name: 'database', undo: () => dropDatabase(run.databaseUrl) });
  undo.push({
    name: 'redis keys',
    undo: async () => {
      const left = await deleteKeys(run.queuePrefix);
      if (left > 0) throw new Error(`${left} keys of ${run.queuePrefix} left`);
    },
  });
  let namespace: string | null = null;
  undo.push({ name: 'pod', undo: () => removePod(run, namespace) });
  await startPod(run);
  namespace = await podPidNamespace(run);
  await waitForSystem(run);

  const api = new Api(`http://127.0.0.1:${API_PORT}`, { authorization: `Bearer ${await signToken(run.jwtSecret, { sub: randomUUID() })}` });
  const browserStarting = launchBrowser();
  // Handled at once, so that a failed launch waits for the await below instead of ending the process.
  browserStarting.catch(() => undefined);
  // A browser that failed to start failed the run already; there is nothing to close then.
  undo.push({ name: 'browser', undo: () => browserStarting.then((b) => b.close(), () => undefined) });
  const { projectId, previewUrl } = await readySession(run, api);
  await checkFastRefresh(await browserStarting, api, projectId, previewUrl);
}

async function main() {
  const run = newRun();
  log(`run ${run.id}: database ${run.databaseUrl.replace(/^.*\//, '')}, queue prefix ${run.queuePrefix}, pod ${run.pod}`);
  const undo: { name: string; undo: () => Promise<void> }[] = [];
  let failure: string | null = null;
  try {
    await smoke(run, undo);
  } catch (err) {
    failure = err instanceof Error ? err.message : String(err);
  }
  const teardownErrors = await teardown(run, undo);
  if (teardownErrors.length > 0) failure = [failure, `teardown: ${teardownErrors.join('; ')}`].filter(Boolean).join('; ');
  if (failure) log(`logs and the pod's YAML kept in ${run.workDir}`);
  else rmSync(run.workDir, { recursive: true, force: true });
  console.log(['', 'image sizes:', ...(await imageSizes())].join('\n'));
  log(`done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  // One line, whatever the reason quoted (container logs).
  console.log(failure ? `images smoke: failed: ${failure.trim().replace(/\s*\n\s*/g, ' | ')}` : 'images smoke: passed');
  process.exit(failure ? 1 : 0);
}

void main();
