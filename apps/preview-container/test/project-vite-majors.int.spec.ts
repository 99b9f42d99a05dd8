import type { ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import WebSocket from 'ws';
import { FIXTURE_PROJECTS_DIR, runNpm, startTestRegistry, type RunningRegistry } from '@velocity/testing';
import { linkNodeModules } from '../src/files';
import { startReadyChild, stopReadyChild } from './ready-line';

/**
 * The machine's dev server on a project that brings its own Vite (5, 6 and 7,
 * installed from the offline test registry's fixtures, as the provisioner
 * installs a project's dependencies) or runs the service's (8, the repo's
 * node_modules), with a vite.config.ts of its own: a plugin, `define`,
 * `resolve.alias`, and every setting the machine needs set the other way, in
 * the file and by a plugin's `config` hook. Each server runs in a child node
 * process (Jest cannot load Vite's ES modules); requests are made from here.
 */
const repoDir = resolve(__dirname, '../../..');
const repoNodeModules = join(repoDir, 'node_modules');
const HMR_CLIENT_PORT = 47123;
const NOT_FOUND = '{"error":"Not found"}';
const SECRET = 'machine-config-secret';
/** The service's own source, and the same through the workspace link in its node_modules. */
const serviceFile = join(repoDir, 'libs/contracts/src/config.ts');
const serviceFileViaLink = join(repoNodeModules, '@velocity/contracts/src/config.ts');
const serviceSourceLine = readFileSync(serviceFile, 'utf8').split('\n')[0];

interface Case {
  major: number;
  /** The fixture project whose dependencies are installed from the test registry; none: the service's node_modules. */
  fixture?: string;
}

const CASES: Case[] = [{ major: 5, fixture: 'vite-5' }, { major: 6, fixture: 'vite-6' }, { major: 7, fixture: 'vite-7' }, { major: 8 }];

const childScript = `
(async () => {
  const { startDevServer } = require(${JSON.stringify(join(__dirname, '../src/dev-server'))});
  const { serveOnLoopback } = require(${JSON.stringify(join(__dirname, '../src/warm-up'))});
  const dev = await startDevServer({
    workDir: process.env.WORK_DIR,
    templateType: 'vanilla-ts',
    nodeModulesRealDir: process.env.DEPS_DIR,
    hmrClientPort: Number(process.env.HMR_CLIENT_PORT),
  });
  const config = dev.vite.config;
  const { server } = config;
  const plugins = config.plugins.map((plugin) => plugin.name);
  const served = await serveOnLoopback(dev);
  const ready = {
    port: served.port,
    version: dev.toolchain.vite.version,
    packageDir: dev.toolchain.vite.packageDir,
    ownDependencies: dev.toolchain.ownDependencies,
    configFile: config.configFile,
    base: config.base,
    cacheDir: config.cacheDir,
    server: {
      middlewareMode: server.middlewareMode, allowedHosts: server.allowedHosts, cors: server.cors,
      proxy: server.proxy ?? null, open: Boolean(server.open), https: Boolean(server.https), fs: { strict: server.fs.strict, allow: server.fs.allow },
    },
    lockdownAt: plugins.indexOf('velocity:lockdown'),
    projectPreAt: plugins.indexOf('project:pre'),
  };
  process.stdout.write('READY ' + JSON.stringify(ready) + '\\n');
  process.stdin.on('end', () => served.close().then(() => dev.close()).then(() => process.exit(0)));
  process.stdin.resume();
})().catch((e) => { console.error(e); process.exit(1); });
`;

interface Ready {
  port: number;
  version: string;
  packageDir: string;
  ownDependencies: boolean;
  configFile: string;
  base: string;
  cacheDir: string;
  server: {
    middlewareMode: boolean;
    allowedHosts: unknown;
    cors: unknown;
    proxy: unknown;
    open: unknown;
    https: unknown;
    fs: { strict: boolean; allow: string[] };
  };
  lockdownAt: number;
  projectPreAt: number;
}

/** The project: everything the machine must override is set the other way, in the file and by a plugin's config hook. */
const VITE_CONFIG = `import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/sub/',
  cacheDir: 'node_modules/.vite',
  clearScreen: true,
  logLevel: 'info',
  define: { __PROJECT_DEFINE__: JSON.stringify('defined by the project'), __PROJECT_CWD__: JSON.stringify(process.cwd()) },
  resolve: { alias: { '@app': fileURLToPath(new URL('./src/lib', import.meta.url)) } },
  server: {
    host: '0.0.0.0',
    port: 5173,
    strictPort: false,
    allowedHosts: ['only.example'],
    cors: true,
    open: true,
    proxy: { '/api': 'http://127.0.0.1:9' },
    hmr: { port: 24999, clientPort: 1111 },
    fs: { strict: false, allow: ['/'], deny: [] },
  },
  plugins: [
    {
      name: 'project:pre',
      enforce: 'pre',
      configureServer(server) {
        server.middlewares.use((_req, res, next) => {
          res.setHeader('x-project-middleware', 'ran');
          next();
        });
      },
    },
    {
      name: 'project:mark',
      transform(code, id) {
        return id.endsWith('/src/main.ts') ? code.replace('PROJECT_PLUGIN_MARK', 'project plugin ran') : undefined;
      },
    },
    {
      name: 'project:config-hook',
      config: () => ({ base: '/hook/', cacheDir: 'node_modules/.vite-hook', server: { port: 5174, host: '0.0.0.0', fs: { allow: ['/'] } } }),
    },
  ],
});
`;

function writeProject(workDir: string): void {
  const files: Record<string, string> = {
    'package.json': JSON.stringify({ name: 'machine-config-check', private: true, type: 'module' }),
    'index.html': '<!doctype html><html><body><div id="app"></div><script type="module" src="/src/main.ts"></script></body></html>',
    'src/main.ts': "import { message } from '@app/message';\nconsole.log(message, __PROJECT_DEFINE__, 'PROJECT_PLUGIN_MARK');\n",
    'src/lib/message.ts': "export const message: string = 'aliased';\n",
    'src/env.d.ts': 'declare const __PROJECT_DEFINE__: string;\n',
    'src/broken.ts': 'export const broken = ;\n',
    '.env': `SECRET=${SECRET}\n`,
    'vite.config.ts': VITE_CONFIG,
  };
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(workDir, path, '..'), { recursive: true });
    writeFileSync(join(workDir, path), content);
  }
}

/** Installs a fixture project's dependencies from the registry into a folder of their own; returns its node_modules. */
async function installFixture(registry: RunningRegistry, fixture: string, into: string): Promise<string> {
  mkdirSync(into, { recursive: true });
  for (const file of ['package.json', 'package-lock.json']) {
    if (existsSync(join(FIXTURE_PROJECTS_DIR, fixture, file))) copyFileSync(join(FIXTURE_PROJECTS_DIR, fixture, file), join(into, file));
  }
  const result = await runNpm(['install'], { cwd: into, registry: registry.url, cache: join(into, '..', `${fixture}-npm-cache`), timeoutMs: 240_000 });
  if (result.code !== 0) throw new Error(`npm install of fixture ${fixture} from the test registry failed (${result.code}):\n${result.stderr}`);
  return join(into, 'node_modules');
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** GET with the path sent exactly as written (fetch would normalise it). */
function get(port: number, path: string, headers: Record<string, string> = { accept: '*/*' }): Promise<Answer> {
  return new Promise((resolveAnswer, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolveAnswer({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(30_000, () => req.destroy(new Error(`GET ${path} timed out after 30 s`)));
    req.end();
  });
}

/** Starts the child and resolves once its dev server listens. */
function startServer(env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; ready: Ready }> {
  return startReadyChild<Ready>(childScript, { cwd: repoDir, env, what: 'dev server', timeoutMs: 60_000 });
}


interface HmrSocket {
  socket: WebSocket;
  /** The first message (received or to come, within 10 s) that `match` accepts. */
  next: (what: string, match: (message: any) => boolean) => Promise<any>;
}

/** Opens Vite's HMR socket on the dev server's own port, as its client does (its token), once it said `connected`. */
async function openHmrSocket(port: number): Promise<HmrSocket> {
  const client = await get(port, '/@vite/client');
  const token = /const wsToken = "([^"]+)"/.exec(client.body)?.[1];
  if (!token) throw new Error('no wsToken in /@vite/client');
  const socket = new WebSocket(`ws://127.0.0.1:${port}/?token=${token}`, 'vite-hmr', { origin: `http://127.0.0.1:${port}` });
  const messages: unknown[] = [];
  const waiters = new Set<() => void>();
  socket.on('message', (data) => {
    messages.push(JSON.parse(String(data)));
    for (const wake of waiters) wake();
  });
  const next = (what: string, match: (message: any) => boolean) =>
    new Promise<any>((resolveMessage, reject) => {
      const check = () => {
        const found = messages.find(match);
        if (found === undefined) return;
        waiters.delete(check);
        clearTimeout(timer);
        resolveMessage(found);
      };
      const timer = setTimeout(() => (waiters.delete(check), reject(new Error(`no ${what} on the HMR socket within 10 s`))), 10_000);
      waiters.add(check);
      socket.once('error', (error) => (clearTimeout(timer), reject(error)));
      check();
    });
  try {
    await next('"connected"', (message) => message.type === 'connected');
  } catch (error) {
    socket.terminate();
    throw error;
  }
  return { socket, next };
}

const tempDir = mkdtempSync(join(tmpdir(), 'pc-project-vite-'));
/** Each case's dependency folder (its node_modules), filled in beforeAll. */
const dependencyDirs = new Map<number, string>();

beforeAll(async () => {
  // The Vite majors a project may bring come from the offline test registry (`npm run test-registry` prepares it).
  const registry = await startTestRegistry();
  try {
    for (const { major, fixture } of CASES) {
      dependencyDirs.set(major, fixture ? await installFixture(registry, fixture, join(tempDir, `deps-${fixture}`)) : repoNodeModules);
    }
  } finally {
    await registry.stop();
  }
}, 600_000);

afterAll(() => {
  rmSync(tempDir, { recursive: true, force: true });
});

describe.each(CASES)('the machine on a project with its own vite.config, Vite $major', ({ major, fixture }) => {
  let workDir: string;
  let depsDir: string;
  let child: ChildProcess | undefined;
  let ready: Ready;
  let viteTempBefore: boolean;

  beforeAll(async () => {
    depsDir = realpathSync(dependencyDirs.get(major)!);
    viteTempBefore = existsSync(join(depsDir, '.vite-temp'));
    workDir = mkdtempSync(join(tempDir, `work-${major}-`));
    writeProject(workDir);
    await linkNodeModules(workDir, depsDir); // as a machine's work folder has it
    const env = { ...process.env, WORK_DIR: workDir, DEPS_DIR: depsDir, HMR_CLIENT_PORT: String(HMR_CLIENT_PORT) };
    ({ child, ready } = await startServer(env));
  }, 90_000);

  afterAll(async () => {
    if (child) await stopReadyChild(child);
  });

  it(fixture ? "runs the project's own Vite, from its dependency folder" : "runs the service's Vite, from the service's node_modules", () => {
    expect(Number(ready.version.split('.')[0])).toBe(major);
    expect(ready.ownDependencies).toBe(fixture !== undefined);
    expect(ready.packageDir).toBe(realpathSync(join(depsDir, 'vite')));
    expect(ready.configFile).toBe(join(workDir, 'vite.config.ts'));
  });

  it("applies the project's config: its plugins, define and resolve.alias", async () => {
    const main = await get(ready.port, '/src/main.ts');
    expect(main.status).toBe(200);
    expect(main.body).toContain('project plugin ran');
    expect(main.body).toMatch(/from "\/src\/lib\/message\.ts"/);
    expect(main.headers['x-project-middleware']).toBe('ran');
    // In dev, Vite gives `define` to the page through its client's env module.
    const client = await get(ready.port, '/@vite/client');
    const envModule = /import "(\/@fs\/[^"]+\/env\.mjs)"/.exec(client.body)?.[1];
    expect(envModule).toBeDefined();
    const env = (await get(ready.port, envModule!)).body;
    expect(env).toContain('defined by the project');
    // The config ran in the project's folder, as under `vite` there.
    expect(env).toContain(workDir);
  });

  it("keeps the machine's settings over the project's file and its plugins' config hooks", async () => {
    expect(ready).toMatchObject({ base: '/', cacheDir: join(workDir, '.vite-cache') });
    expect(ready.server).toEqual({
      middlewareMode: true,
      allowedHosts: true,
      cors: false,
      proxy: null,
      open: false,
      https: false,
      fs: { strict: true, allow: [workDir, depsDir] },
    });
    // base '/', any Host (the edge decides which reach the machine), no CORS answer for another origin.
    const page = await get(ready.port, '/', { accept: 'text/html', host: 'a1b2c3.preview.example', origin: 'http://other.localhost' });
    expect(page.status).toBe(200);
    expect(page.body).toContain('<script type="module" src="/@vite/client"></script>');
    expect(page.headers['access-control-allow-origin']).toBeUndefined();
    // No proxy: /api is the app's own path (the SPA fallback answers).
    expect((await get(ready.port, '/api/ping', { accept: 'text/html' })).status).toBe(200);
    // The page's HMR socket goes to the edge's port, and is served by the machine's server (not on the project's hmr.port).
    expect((await get(ready.port, '/@vite/client')).body).toMatch(new RegExp(`const hmrPort = ${HMR_CLIENT_PORT};`));
    (await openHmrSocket(ready.port)).socket.terminate();
    // Vite's cache and its bundled config are written in the work folder, never in the dependency folder.
    expect(existsSync(join(workDir, '.vite-cache'))).toBe(true);
    expect(existsSync(join(depsDir, '.vite'))).toBe(false);
    expect(existsSync(join(depsDir, '.vite-hook'))).toBe(false);
    expect(existsSync(join(depsDir, '.vite-temp'))).toBe(viteTempBefore);
    expect(readdirSync(workDir).filter((name) => name.includes('.timestamp-'))).toEqual([]);
  });

  it(".env and the service's files are refused, before the project's middlewares", async () => {
    for (const path of ['/.env', '/.env?raw', `/@fs${workDir}/.env`]) {
      const answer = await get(ready.port, path);
      expect({ path, refused: answer.status === 403 || answer.status === 404 }).toEqual({ path, refused: true });
      expect(answer.body).not.toContain(SECRET);
    }
    const serviceFiles = [serviceFile, serviceFileViaLink];
    // A project with dependencies of its own reads none of the service's.
    if (fixture) serviceFiles.push(join(realpathSync(repoNodeModules), 'react/index.js'), join(realpathSync(repoNodeModules), 'vite/dist/client/env.mjs'));
    for (const file of serviceFiles) {
      const answer = await get(ready.port, `/@fs${file}?raw`);
      expect({ file, status: answer.status, body: answer.body }).toEqual({ file, status: 404, body: NOT_FOUND });
      // Answered by the lockdown, which runs before the project's own `enforce: 'pre'` plugin.
      expect(answer.headers['x-project-middleware']).toBeUndefined();
    }
    // By package name too (resolvable only where the dependency folder is the service's).
    expect((await get(ready.port, '/@id/@velocity/contracts/src/config.ts?raw')).body).not.toContain(serviceSourceLine);
    expect(ready.lockdownAt).toBeGreaterThanOrEqual(0);
    expect(ready.lockdownAt).toBeLessThan(ready.projectPreAt);
  });

  it('opens no editor, and names no host folder in an error answer or its HMR payload', async () => {
    expect(await get(ready.port, '/__open-in-editor?file=/etc/passwd')).toMatchObject({ status: 404, body: NOT_FOUND });
    const hmr = await openHmrSocket(ready.port);
    try {
      const answer = await get(ready.port, '/src/broken.ts');
      const payload = await hmr.next('error payload', (message) => message.type === 'error');
      expect(answer.status).toBe(500);
      for (const text of [answer.body, JSON.stringify(payload)]) {
        expect(text).toContain('src/broken.ts');
        for (const dir of [workDir, depsDir, repoDir]) expect(text).not.toContain(dir);
      }
    } finally {
      hmr.socket.terminate();
    }
  });
});
