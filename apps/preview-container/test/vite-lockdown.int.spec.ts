import type { ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import WebSocket from 'ws';
import { linkNodeModules } from '../src/files';
import { startReadyChild, stopReadyChild } from './ready-line';
import { lockdownRewrites, pathHider, SECRET_FILE_DENY } from '../src/vite-lockdown';

/**
 * viteLockdown over real Vite dev servers on loopback ports, asked as an
 * attacker would (raw HTTP paths, the HMR websocket). Vite is an ES module Jest
 * cannot load, so the servers run in a child node process; the requests are
 * made from here. The child runs two servers on the same project: `locked`
 * with the plugin and machineFsOptions, and `control` configured as the machines
 * were before it, to show each attack works without the plugin (so each check can fail).
 */
const repoDir = resolve(__dirname, '../../..');
const repoNodeModules = join(repoDir, 'node_modules');
/** The service's own source, reachable through the workspace symlink node_modules/@velocity/contracts. */
const serviceSource = readFileSync(join(repoDir, 'libs/contracts/src/config.ts'), 'utf8');
const serviceSourceFirstLine = serviceSource.split('\n')[0];
const NOT_FOUND = '{"error":"Not found"}';
/** The service's source as a module URL through the symlink (Vite keeps `/@fs/` paths unresolved). */
const serviceModuleUrl = `/@fs${repoNodeModules}/@velocity/contracts/src/config.ts`;
/** A comment of that source, kept by Vite's transform. */
const serviceSourceComment = serviceSource.split('\n').find((line) => /^ \* \w+( \w+){4}/.test(line))?.slice(3);

const childScript = `
(async () => {
  const { join } = require('node:path');
  const { viteLockdown, machineFsOptions } = require(${JSON.stringify(join(__dirname, '../src/vite-lockdown'))});
  const { createServer, resolveConfig } = await import('vite');
  const { default: react } = await import('@vitejs/plugin-react');
  const root = process.env.LOCKDOWN_ROOT;
  const lockdown = { root, dependencyDirs: [process.env.LOCKDOWN_NODE_MODULES] };
  const fsOptions = await machineFsOptions(lockdown);
  const config = (cacheDir, fs, plugins = []) => ({
    root, configFile: false, logLevel: 'silent', clearScreen: false, cacheDir: join(root, cacheDir), plugins: [...plugins, react()],
    optimizeDeps: { include: ['react', 'react/jsx-dev-runtime'] },
    server: { host: '127.0.0.1', port: 0, strictPort: true, fs },
  });
  // The control is configured as dev-server.ts configures machines without the plugin.
  const control = await createServer(config('.vite-cache-control', { strict: true, allow: [root, process.env.LOCKDOWN_NODE_MODULES] }));
  const locked = await createServer(config('.vite-cache', fsOptions, [viteLockdown(lockdown)]));
  const servers = [control, locked];
  const stop = () => Promise.allSettled(servers.map((server) => server.close())).then(() => process.exit(0));
  process.stdin.on('end', stop);
  process.stdin.resume();
  await Promise.all(servers.map((server) => server.listen()));
  const viteDefaultDeny = (await resolveConfig({ root, configFile: false, logLevel: 'silent' }, 'serve')).server.fs.deny;
  const port = (server) => server.httpServer.address().port;
  // A module asked for other than by request (pre-transform of an import, warm-up): the load hook's check.
  const transform = (server) =>
    server.transformRequest(process.env.LOCKDOWN_SERVICE_MODULE_URL).then((r) => r?.code ?? '', (e) => 'refused: ' + e.message);
  const transformed = { control: await transform(control), locked: await transform(locked) };
  const ready = { control: port(control), locked: port(locked), fsOptions, viteDefaultDeny, transformed };
  process.stdout.write('READY ' + JSON.stringify(ready) + '\\n');
})().catch((e) => { console.error(e); process.exit(1); });
`;

interface Ready {
  control: number;
  locked: number;
  fsOptions: { strict: boolean; allow: string[]; deny: string[] };
  viteDefaultDeny: string[];
  /** What transformRequest gave for serviceModuleUrl on each server. */
  transformed: { control: string; locked: string };
}

interface Answer {
  status: number;
  body: string;
}

/** GET with the path sent exactly as written (fetch would normalise it). */
function get(port: number, path: string, headers: Record<string, string> = { accept: '*/*' }): Promise<Answer> {
  return new Promise((resolvePromise, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(15_000, () => req.destroy(new Error(`GET ${path} timed out`)));
    req.end();
  });
}

/** Opens Vite's HMR socket as its client does: the `vite-hmr` subprotocol and the page's token (required when an Origin is sent). */
interface HmrSocket {
  socket: WebSocket;
  /** Every message received (JSON-parsed), in order. */
  messages: unknown[];
  /** The first message (received or to come, within 10 s) that `match` accepts. */
  next: (match: (m: any) => boolean) => Promise<any>;
}

async function openHmrSocket(port: number): Promise<HmrSocket> {
  const client = await get(port, '/@vite/client');
  const token = /const wsToken = "([^"]+)"/.exec(client.body)?.[1];
  if (!token) throw new Error('no wsToken in /@vite/client');
  const socket = new WebSocket(`ws://127.0.0.1:${port}/?token=${token}`, 'vite-hmr', { origin: `http://127.0.0.1:${port}` });
  const messages: unknown[] = [];
  const waiters: Array<{ match: (m: any) => boolean; resolve: (m: any) => void }> = [];
  socket.on('message', (data) => {
    const message = JSON.parse(String(data));
    messages.push(message);
    for (const waiter of waiters.filter((w) => w.match(message))) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve(message);
    }
  });
  const next = (match: (m: any) => boolean) =>
    new Promise<any>((resolveMessage, reject) => {
      const seen = messages.find(match);
      if (seen) return resolveMessage(seen);
      const timer = setTimeout(() => reject(new Error('no matching HMR message in 10 s')), 10_000);
      waiters.push({ match, resolve: (m) => (clearTimeout(timer), resolveMessage(m)) });
    });
  await next((m) => m.type === 'connected');
  return { socket, messages, next };
}

async function waitFor(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return check();
}

/** Starts the child and resolves with its ports once both servers listen. */
function startServers(env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; ready: Ready }> {
  return startReadyChild<Ready>(childScript, { cwd: repoDir, env, what: 'servers', timeoutMs: 20_000 });
}


describe('pathHider', () => {
  const hide = pathHider(lockdownRewrites(['/tmp/p'], ['/srv/app/node_modules']));

  it('names the project relatively, dependencies as node_modules/ and the rest of the host folder as [host]/', () => {
    expect(hide('at /tmp/p/src/App.tsx:3:1')).toBe('at src/App.tsx:3:1');
    expect(hide('"/tmp/p"')).toBe('"."');
    expect(hide('file:///srv/app/node_modules/vite/dist/node.js:1')).toBe('node_modules/vite/dist/node.js:1');
    expect(hide('/@fs/srv/app/node_modules/react/index.js')).toBe('node_modules/react/index.js');
    expect(hide('at /srv/app/libs/contracts/src/config.ts:9')).toBe('at [host]/libs/contracts/src/config.ts:9');
    expect(hide('[ ../../tmp/p/src/broken.ts:1:18 ]')).toBe('[ src/broken.ts:1:18 ]');
  });

  it('names a project that holds its dependencies as the project', () => {
    const hideInside = pathHider(lockdownRewrites(['/p'], ['/p/node_modules']));
    expect(hideInside('/p/src/a.ts /p/node_modules/react/index.js')).toBe('src/a.ts node_modules/react/index.js');
  });

  it('leaves paths that only start with the same letters', () => {
    expect(hide('/tmp/p-other/a.ts /tmp/pa /srv/application')).toBe('/tmp/p-other/a.ts /tmp/pa /srv/application');
  });
});

describe('viteLockdown (real Vite, in a child process)', () => {
  let projectDir: string;
  let editorMarker: string;
  let child: ChildProcess | undefined;
  let ready: Ready;
  const sockets: WebSocket[] = [];

  beforeAll(async () => {
    projectDir = mkdtempSync(join(tmpdir(), 'pc-lockdown-'));
    await linkNodeModules(projectDir, repoNodeModules); // as a machine's work folder has it
    mkdirSync(join(projectDir, 'src'));
    writeFileSync(
      join(projectDir, 'index.html'),
      '<!doctype html><html><body><div id="app"></div><script type="module" src="/src/main.ts"></script></body></html>',
    );
    writeFileSync(join(projectDir, 'src/greeting.ts'), 'export const greeting: string = "hello";\n');
    writeFileSync(
      join(projectDir, 'src/App.tsx'),
      'import { greeting } from "./greeting";\nexport function App() {\n  return <p>{greeting}</p>;\n}\n',
    );
    writeFileSync(
      join(projectDir, 'src/main.ts'),
      [
        'import "vite/modulepreload-polyfill";',
        'import { createElement } from "react";',
        'import { App } from "./App";',
        'import { greeting } from "./greeting";',
        'console.log(createElement(App), greeting);',
        '',
      ].join('\n'),
    );
    // A stylesheet may @import any file it can name: Vite inlines it by reading the file.
    writeFileSync(join(projectDir, 'src/passwd.css'), '@import "/etc/passwd";\nbody { color: red; }\n');
    writeFileSync(join(projectDir, 'src/service.css'), '@import "@velocity/contracts/src/config.ts";\nbody { color: red; }\n');
    writeFileSync(join(projectDir, 'src/broken.ts'), 'export const broken = ;\n');
    writeFileSync(join(projectDir, '.env'), 'SECRET=1\n');
    // The "editor": records what it was asked to open.
    editorMarker = join(projectDir, 'editor-opened.txt');
    const editor = join(projectDir, 'editor.sh');
    writeFileSync(editor, `#!/bin/sh\necho "$1" >> '${editorMarker}'\n`);
    chmodSync(editor, 0o755);
    const env = {
      ...process.env,
      LAUNCH_EDITOR: editor,
      EDITOR: editor,
      VISUAL: editor,
      LOCKDOWN_ROOT: projectDir,
      LOCKDOWN_NODE_MODULES: repoNodeModules,
      LOCKDOWN_SERVICE_MODULE_URL: serviceModuleUrl,
    };
    ({ child, ready } = await startServers(env));
  }, 30_000);

  afterAll(async () => {
    for (const socket of sockets) socket.terminate();
    if (child) await stopReadyChild(child);
    rmSync(projectDir, { recursive: true, force: true }); // removes the node_modules link, not its target
  });

  it('answers 404 to /__open-in-editor and spawns no editor (the control spawns one)', async () => {
    // Connect matches mount paths case-insensitively, and with a trailing slash.
    for (const path of ['/__open-in-editor?file=/etc/passwd', '/__OPEN-IN-EDITOR?file=/etc/passwd', '/__open-in-editor/?file=/etc/passwd']) {
      expect(await get(ready.locked, path)).toEqual({ status: 404, body: NOT_FOUND });
    }
    // Control: the same endpoint without the plugin runs the editor (the marker appears).
    await get(ready.control, `/__open-in-editor?file=${encodeURIComponent(join(projectDir, 'index.html'))}:1:1`);
    const opened = () => (existsSync(editorMarker) ? readFileSync(editorMarker, 'utf8') : '');
    expect(await waitFor(() => opened().includes('index.html'), 5_000)).toBe(true);
    // By now an editor started by the locked server's requests (sent first) would have written too.
    expect(opened()).not.toContain('/etc/passwd');
  });

  it("refuses the service's sources behind node_modules symlinks, by every URL form Vite serves files by", async () => {
    const queries = ['', '?raw', '?url', '?import', '?raw&import', '?inline'];
    const paths = [
      ...queries.map((q) => `/@fs${repoNodeModules}/@velocity/contracts/src/config.ts${q}`),
      ...queries.map((q) => `/node_modules/@velocity/contracts/src/config.ts${q}`),
      `/node_modules/@velocity/contracts/package.json`,
      `/node_modules/@velocity/contracts/src/config%2Ets?raw`,
      `/node_modules/react/../@velocity/contracts/src/config.ts?raw`,
      `${repoNodeModules}/@velocity/contracts/src/config.ts?raw`,
      `/@id/@velocity/contracts/src/config.ts?raw`,
      `/@fs${repoDir}/libs/contracts/src/config.ts?raw`,
      `/@fs/etc/passwd`,
    ];
    for (const path of paths) {
      const answer = await get(ready.locked, path);
      expect({ path, ...answer }).toEqual({ path, status: 404, body: NOT_FOUND });
    }
    // Control: without the plugin the same URL serves the file.
    const leaked = await get(ready.control, `/@fs${repoNodeModules}/@velocity/contracts/src/config.ts?raw`);
    expect(leaked.status).toBe(200);
    expect(leaked.body).toContain(JSON.stringify(serviceSourceFirstLine).slice(1, -1));

    // Asked for without a request, the module is refused when loaded.
    expect(serviceSourceComment).toBeDefined();
    expect(ready.transformed.control).toContain(serviceSourceComment);
    expect(ready.transformed.locked).toMatch(/^refused: Not found/);

    // CSS @import: refused when resolved, so neither the CSS nor the error shows the file.
    const passwdFirstLine = readFileSync('/etc/passwd', 'utf8').split('\n')[0];
    const passwdCss = await get(ready.locked, '/src/passwd.css');
    expect(passwdCss.status).toBe(500);
    expect(passwdCss.body).not.toContain(passwdFirstLine);
    expect((await get(ready.control, '/src/passwd.css')).body).toContain(passwdFirstLine);
    const serviceCss = await get(ready.locked, '/src/service.css');
    expect(serviceCss.status).toBe(500);
    expect(serviceCss.body).not.toContain(serviceSourceFirstLine);
    expect(serviceCss.body).not.toContain(repoDir);
  });

  it("still serves the page, the project's TS and React modules, Vite's client and real dependencies", async () => {
    const page = await get(ready.locked, '/', { accept: 'text/html' });
    expect(page.status).toBe(200);
    expect(page.body).toContain('/@vite/client');
    const main = await get(ready.locked, '/src/main.ts');
    expect(main.status).toBe(200);
    const imports = [...main.body.matchAll(/from "([^"]+)"|import "([^"]+)"/g)].map((m) => m[1] ?? m[2]);
    expect(imports).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^\/\.vite-cache\/deps\/react\.js/),
        expect.stringMatching(/^\/src\/App\.tsx/),
        expect.stringMatching(/^\/src\/greeting\.ts/),
        expect.stringMatching(/^\/@id\/__x00__/),
      ]),
    );
    for (const path of imports) expect({ path, status: (await get(ready.locked, path)).status }).toEqual({ path, status: 200 });
    const app = await get(ready.locked, imports.find((path) => path.startsWith('/src/App.tsx'))!);
    const appImports = [...app.body.matchAll(/from "([^"]+)"/g)].map((m) => m[1]);
    expect(appImports).toEqual(
      expect.arrayContaining(['/@react-refresh', expect.stringMatching(/^\/\.vite-cache\/deps\/react_jsx-dev-runtime\.js/)]),
    );
    for (const path of appImports) expect({ path, status: (await get(ready.locked, path)).status }).toEqual({ path, status: 200 });
    const client = await get(ready.locked, '/@vite/client');
    expect(client.status).toBe(200);
    const clientEnv = /import "(\/@fs\/[^"]+\/vite\/dist\/client\/env\.mjs)"/.exec(client.body)?.[1];
    expect(clientEnv).toBeDefined();
    expect((await get(ready.locked, clientEnv!)).status).toBe(200);
    expect((await get(ready.locked, `/@fs${realpathSync(repoNodeModules)}/vite/dist/client/client.mjs`)).status).toBe(200);
    expect((await get(ready.locked, '/node_modules/react/index.js')).status).toBe(200);
    expect((await get(ready.locked, '/node_modules/react/index.js?import')).status).toBe(200);
  });

  it('names no host folder in error answers and HMR error payloads', async () => {
    const hostDirs = [...new Set([projectDir, realpathSync(projectDir), repoDir, realpathSync(repoDir)])];
    const expectNoHostDir = (text: string) => {
      for (const dir of hostDirs) expect(text).not.toContain(dir);
    };
    const isBrokenError = (m: any) => m.type === 'error' && m.err?.message?.includes('Unexpected token');

    // Before any page connects (src/broken.ts was written before the servers started): Vite keeps
    // the error and sends it to the next page that connects.
    const [lockedAnswer, controlAnswer] = await Promise.all([get(ready.locked, '/src/broken.ts'), get(ready.control, '/src/broken.ts')]);
    expect(lockedAnswer.status).toBe(500);
    expect(lockedAnswer.body).toContain('src/broken.ts');
    expectNoHostDir(lockedAnswer.body);
    expect(controlAnswer.body).toContain(projectDir); // Vite's own answer names the project's absolute folder
    const [locked, control] = await Promise.all([openHmrSocket(ready.locked), openHmrSocket(ready.control)]);
    sockets.push(locked.socket, control.socket);
    const [lockedKept, controlKept] = await Promise.all([locked.next(isBrokenError), control.next(isBrokenError)]);
    expect(lockedKept.err.id).toBe('src/broken.ts');
    expectNoHostDir(JSON.stringify(lockedKept));
    expect(controlKept.err.id).toBe(join(realpathSync(projectDir), 'src/broken.ts'));

    // With the page connected, the file is written broken again: Vite tells the page to reload,
    // the page asks for the module again and Vite sends the error to the page.
    locked.messages.length = 0;
    control.messages.length = 0;
    writeFileSync(join(projectDir, 'src/broken.ts'), 'export const broken = ;\nexport const again = ;\n');
    const isReload = (m: any) => m.type === 'full-reload';
    const [lockedReload, controlReload] = await Promise.all([locked.next(isReload), control.next(isReload)]);
    expect(lockedReload.triggeredBy).toBe('src/broken.ts');
    expect(controlReload.triggeredBy).toBe(join(realpathSync(projectDir), 'src/broken.ts'));
    const lockedAgain = await get(ready.locked, '/src/broken.ts');
    await get(ready.control, '/src/broken.ts');
    const [lockedPayload, controlPayload] = await Promise.all([locked.next(isBrokenError), control.next(isBrokenError)]);
    expect(lockedAgain.status).toBe(500);
    for (const text of [lockedAgain.body, JSON.stringify(lockedPayload)]) {
      expect(text).toContain('src/broken.ts');
      expectNoHostDir(text);
    }
    expect(lockedPayload.err.id).toBe('src/broken.ts');
    expect(JSON.stringify(controlPayload)).toContain(realpathSync(projectDir));
    for (const message of locked.messages) expectNoHostDir(JSON.stringify(message));

    // A refused request from the page (the client environment runs no modules) answers with a stack.
    const invoke = { type: 'custom', event: 'vite:invoke', data: { id: 'send:1', name: 'fetchModule', data: ['/src/main.ts'] } };
    locked.socket.send(JSON.stringify(invoke));
    control.socket.send(JSON.stringify(invoke));
    const isReply = (m: any) => m.event === 'vite:invoke' && m.data?.id === 'response:1';
    const [lockedReply, controlReply] = await Promise.all([locked.next(isReply), control.next(isReply)]);
    expect(lockedReply.data.data.error.stack).toContain('node_modules/vite/');
    expectNoHostDir(JSON.stringify(lockedReply));
    expect(JSON.stringify(controlReply)).toContain(repoDir);

    // Vite's "outside of the allow list" page lists the allowed folders.
    const denied = await get(ready.locked, '/.env');
    expect(denied.status).toBe(403);
    expectNoHostDir(denied.body);
    expect((await get(ready.control, '/.env')).body).toContain(projectDir);
  });

  it("allows the work folder and real dependencies, and keeps Vite's default deny list", () => {
    expect(ready.fsOptions.strict).toBe(true);
    const realProjectDir = realpathSync(projectDir);
    expect(ready.fsOptions.allow).toEqual([projectDir, ...(realProjectDir === projectDir ? [] : [realProjectDir]), realpathSync(repoNodeModules)]);
    expect(ready.fsOptions.deny).toEqual([...ready.viteDefaultDeny, ...SECRET_FILE_DENY]);
  });
});
