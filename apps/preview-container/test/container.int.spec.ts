/**
 * The real container, as a child process, against a real files endpoint: it loads
 * the React template, starts Vite and serves the app at the root of its own
 * preview origin (`<id>.localhost`) with Vite in its own server (HTTP and the HMR
 * websocket), and only for that origin.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { templateFiles } from '@velocity/contracts';
import { freePort } from '@velocity/runtime';

const REPO_ROOT = join(__dirname, '../../..');
const TOKEN = `machine-token-${randomBytes(8).toString('hex')}`;
const HMR_CLIENT_PORT = 47123;

interface Started {
  child: ChildProcess;
  port: number;
  logs: string[];
  exited: Promise<number | null>;
  spawnedAt: number;
}

const children: Started[] = [];
const tempDirs: string[] = [];
let filesServer: Server;
let filesBase: string;
const filesRequests: { url: string; authorization?: string }[] = [];
/** The first /files request answers 503 (the container must retry); the second waits until the test saw /health 503. */
let releaseFiles!: () => void;
const filesGate = new Promise<void>((resolve) => (releaseFiles = resolve));

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

async function spawnContainer(env: Record<string, string>): Promise<Started> {
  const port = await freePort();
  const logs: string[] = [];
  const spawnedAt = Date.now();
  const child = spawn(process.execPath, ['-r', '@swc-node/register', 'apps/preview-container/src/main.ts'], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOG_LEVEL: 'info', PORT: String(port), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => logs.push(...chunk.split('\n').filter(Boolean)));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => logs.push(...chunk.split('\n').filter(Boolean)));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const started = { child, port, logs, exited, spawnedAt };
  children.push(started);
  return started;
}

async function waitFor<T>(what: string, timeoutMs: number, attempt: () => Promise<T | undefined>, started?: Started): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    if (started && started.child.exitCode !== null) {
      throw new Error(`Container exited (code ${started.child.exitCode}) while waiting for ${what}. Logs:\n${started.logs.join('\n')}`);
    }
    try {
      const value = await attempt();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(
    `Timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}` +
      (started ? `. Logs:\n${started.logs.join('\n')}` : ''),
  );
}

async function stopChild(started: Started, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  if (started.child.exitCode !== null || started.child.signalCode !== null) return started.child.exitCode;
  started.child.kill(signal);
  const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 5_000).unref());
  const result = await Promise.race([started.exited, timeout]);
  if (result === 'timeout') {
    started.child.kill('SIGKILL');
    return started.exited;
  }
  return result;
}

interface WsClient {
  status: number;
  socket?: Socket;
  /** Resolves with the next text message whose JSON satisfies `match`. */
  nextMessage(match: (message: { type?: string; [key: string]: unknown }) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
}

/** Opens a websocket with the raw protocol (Node 20 has no WebSocket client) and reads the server's text frames. */
function openWebSocket(port: number, path: string, host?: string, protocol = 'vite-hmr'): Promise<WsClient> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port,
      path,
      headers: {
        ...(host ? { host } : {}),
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': randomBytes(16).toString('base64'),
        'sec-websocket-protocol': protocol,
      },
    });
    req.on('upgrade', (res: IncomingMessage, socket: Socket, head: Buffer) => {
      const messages: Record<string, unknown>[] = [];
      const waiters = new Set<() => void>();
      let buffer = head;
      const readFrames = () => {
        // Server frames are unmasked and, for Vite's messages, not fragmented.
        while (buffer.length >= 2) {
          const short = buffer[1] & 0x7f;
          const offset = short === 126 ? 4 : short === 127 ? 10 : 2;
          if (buffer.length < offset) return;
          const size = short === 126 ? buffer.readUInt16BE(2) : short === 127 ? Number(buffer.readBigUInt64BE(2)) : short;
          if (buffer.length < offset + size) return;
          if ((buffer[0] & 0x0f) === 1) messages.push(JSON.parse(buffer.subarray(offset, offset + size).toString('utf8')));
          buffer = buffer.subarray(offset + size);
        }
        waiters.forEach((wake) => wake());
      };
      socket.on('data', (data: Buffer) => {
        buffer = Buffer.concat([buffer, data]);
        readFrames();
      });
      readFrames();
      const nextMessage: WsClient['nextMessage'] = (match, timeoutMs = 10_000) =>
        new Promise((resolveMessage, rejectMessage) => {
          const check = () => {
            const index = messages.findIndex(match);
            if (index === -1) return;
            const [found] = messages.splice(index, 1);
            waiters.delete(check);
            clearTimeout(timer);
            resolveMessage(found);
          };
          const timer = setTimeout(() => {
            waiters.delete(check);
            rejectMessage(new Error(`Timed out after ${timeoutMs} ms waiting for a websocket message; got ${JSON.stringify(messages)}`));
          }, timeoutMs);
          waiters.add(check);
          check();
        });
      resolve({ status: res.statusCode ?? 0, socket, nextMessage });
    });
    req.on('response', (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0, nextMessage: () => Promise.reject(new Error('not upgraded')) });
    });
    req.on('error', reject);
    req.end();
  });
}

beforeAll(async () => {
  let okRequests = 0;
  filesServer = createServer(async (req, res) => {
    filesRequests.push({ url: req.url!, authorization: req.headers.authorization });
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.headers.authorization !== `Bearer ${TOKEN}`) return send(401, { error: 'Unauthorized' });
    if (req.url === '/files/ok') {
      okRequests++;
      if (okRequests === 1) return send(503, { error: 'try again' });
      await filesGate;
      return send(200, { files: templateFiles('react') });
    }
    if (req.url === '/files/evil') {
      return send(200, { files: [...templateFiles('react'), { path: '../evil.js', content: 'throw new Error("escaped")' }] });
    }
    send(404, { error: 'Not found' });
  });
  await new Promise<void>((resolve) => filesServer.listen(0, '127.0.0.1', resolve));
  filesBase = `http://127.0.0.1:${(filesServer.address() as AddressInfo).port}`;
});

afterAll(async () => {
  releaseFiles();
  await Promise.all(children.map((c) => stopChild(c, 'SIGKILL')));
  await new Promise<void>((resolve) => {
    filesServer.close(() => resolve());
    filesServer.closeAllConnections();
  });
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

describe('preview container serving the React template', () => {
  const sessionId = randomUUID();
  const projectId = randomUUID();
  let container: Started;
  /** The machine as the provider reaches it, and its preview origin (what the edge forwards). */
  let origin: string;
  let preview: string;
  let previewHost: string;
  let workDir: string;
  let healthAt = 0;
  const sawStarting: unknown[] = [];

  /** Vite's websocket token, read from the client the way the browser gets it. */
  async function wsToken(): Promise<string> {
    const clientCode = await (await fetch(`${preview}/@vite/client`)).text();
    const token = /const wsToken = "([^"]+)"/.exec(clientCode)?.[1];
    if (!token) throw new Error('no wsToken in the Vite client');
    return token;
  }

  beforeAll(async () => {
    const parent = tempDir('pc-int-');
    workDir = join(parent, 'work');
    container = await spawnContainer({
      SESSION_ID: sessionId,
      PROJECT_ID: projectId,
      WORK_DIR: workDir,
      FILES_URL: `${filesBase}/files/ok`,
      MACHINE_TOKEN: TOKEN,
      HMR_CLIENT_PORT: String(HMR_CLIENT_PORT),
    });
    origin = `http://127.0.0.1:${container.port}`;
    previewHost = `${sessionId}.localhost:${container.port}`;
    preview = `http://${previewHost}`;
    await waitFor(
      `GET ${origin}/health to answer 200`,
      45_000,
      async () => {
        const res = await fetch(`${origin}/health`);
        const body = await res.json();
        if (res.status === 503) {
          sawStarting.push(body);
          releaseFiles();
        }
        return res.status === 200 ? body : undefined;
      },
      container,
    );
    healthAt = Date.now();
    console.log(`[preview-container] spawn -> /health 200: ${healthAt - container.spawnedAt} ms`);
  }, 60_000);

  it("hands its own preview's HMR websocket to Vite, in the same server", async () => {
    const own = await openWebSocket(container.port, `/?token=${await wsToken()}`, previewHost);
    try {
      expect(own.status).toBe(101);
      await own.nextMessage((m) => m.type === 'connected');
    } finally {
      own.socket?.destroy();
    }
  });

  it('answered /health 503 with the same shape while loading', () => {
    expect(sawStarting.length).toBeGreaterThan(0);
    expect(sawStarting[0]).toEqual({ status: 'failing', devServer: 'failing', data: 'failing', session: 'ok', sessionId });
  });

  it('fetched the files with the bearer token, retrying a 503', () => {
    const ok = filesRequests.filter((r) => r.url === '/files/ok');
    expect(ok.length).toBe(2);
    expect(ok.every((r) => r.authorization === `Bearer ${TOKEN}`)).toBe(true);
  });

  it('reports health 200 with the documented shape', async () => {
    const res = await fetch(`${origin}/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok', devServer: 'ok', data: 'ok', session: 'ok', sessionId });
  });

  it('serves the index.html transformed by Vite at the root of its preview origin, with no referrer', async () => {
    const res = await fetch(`${preview}/`);
    console.log(`[preview-container] spawn -> first page 200: ${Date.now() - container.spawnedAt} ms (health + ${Date.now() - healthAt} ms)`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/html/);
    expect(res.headers.get('referrer-policy')).toBe('no-referrer');
    const html = await res.text();
    expect(html).toContain('"/@vite/client"');
    expect(html).toContain('"/src/main.jsx"');
    expect(html).toContain('<div id="root"></div>');
  });

  it('serves a changed index.html at once, though the transformed page is kept', async () => {
    const page = async () => (await fetch(`${preview}/`, { headers: { accept: 'text/html' } })).text();
    const original = readFileSync(join(workDir, 'index.html'), 'utf8');
    const first = await page();
    expect(await page()).toBe(first);
    writeFileSync(join(workDir, 'index.html'), original.replace('<div id="root"></div>', '<div id="root"></div><p id="changed"></p>'));
    try {
      const changed = await page();
      expect(changed).toContain('<p id="changed"></p>');
      expect(changed).toContain('"/@vite/client"');
    } finally {
      writeFileSync(join(workDir, 'index.html'), original);
    }
    expect(await page()).toBe(first);
  });

  it('serves the transformed React module, CSS as a module and the Vite client', async () => {
    const app = await fetch(`${preview}/src/App.jsx`);
    expect(app.status).toBe(200);
    expect(app.headers.get('content-type')).toMatch(/javascript/);
    const appCode = await app.text();
    expect(appCode).toContain('count is');
    expect(appCode).not.toContain('<button'); // JSX was compiled

    const css = await fetch(`${preview}/src/App.css`);
    expect(css.status).toBe(200);
    expect(css.headers.get('content-type')).toMatch(/javascript/);
    expect(await css.text()).toContain('__vite__updateStyle');

    const client = await fetch(`${preview}/@vite/client`);
    expect(client.status).toBe(200);
    const clientCode = await client.text();
    expect(clientCode).toContain(`const hmrPort = ${HMR_CLIENT_PORT}`);
    expect(clientCode).toContain('const base = "/" ||');
  });

  it('rewrites the bare react import to a root URL that loads', async () => {
    const main = await (await fetch(`${preview}/src/main.jsx`)).text();
    const imports = [...main.matchAll(/from\s+"([^"]+)"/g)].map((m) => m[1]);
    const react = imports.find((url) => /\/deps\/react\.js/.test(url));
    expect(react).toBeDefined();
    expect(react!.startsWith('/')).toBe(true);
    expect(main).not.toMatch(/from\s+["']react["']/);
    const res = await fetch(`${preview}${react}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/javascript/);

    const reactDom = imports.find((url) => /\/deps\/react-dom_client\.js/.test(url));
    expect(reactDom?.startsWith('/')).toBe(true);
    expect((await fetch(`${preview}${reactDom}`)).status).toBe(200);
  });

  it('serves index.html for client-side routes (SPA fallback), and root paths such as /health are the project’s', async () => {
    for (const path of ['/some/client/route', '/health']) {
      const res = await fetch(`${preview}${path}`, { headers: { accept: 'text/html' } });
      expect(res.status).toBe(200);
      expect(await res.text()).toContain('"/src/main.jsx"');
    }
  });

  it('refuses Vite’s open-in-editor endpoint on its preview origin', async () => {
    const res = await fetch(`${preview}/__open-in-editor?file=/etc/passwd`);
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: 'Not found' });
  });

  it('answers 404 Session not found for another preview origin, and serves nothing of the project on its own address', async () => {
    const other = randomUUID();
    const res = await fetch(`http://${other}.localhost:${container.port}/`);
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toMatch(/application\/json/);
    expect(await res.json()).toEqual({ error: 'Session not found', routeId: other });

    const elsewhere = await fetch(`${origin}/src/App.jsx`);
    expect(elsewhere.status).toBe(404);
    expect(await elsewhere.json()).toEqual({ error: 'Not found' });
  });

  it('passes the HMR websocket for its own preview origin only', async () => {
    const token = await wsToken();
    const own = await openWebSocket(container.port, `/?token=${token}`, previewHost);
    try {
      expect(own.status).toBe(101);
      await own.nextMessage((m) => m.type === 'connected');

      // An edit in WORK_DIR reaches the browser side as an HMR update through the machine.
      const appPath = join(workDir, 'src/App.jsx');
      writeFileSync(appPath, readFileSync(appPath, 'utf8').replace('count is', 'clicks:'));
      const update = await own.nextMessage((m) => m.type === 'update');
      expect(JSON.stringify(update)).toContain('/src/App.jsx');
      expect(await (await fetch(`${preview}/src/App.jsx`)).text()).toContain('clicks:');
    } finally {
      own.socket?.destroy();
    }

    const other = await openWebSocket(container.port, `/?token=${token}`, `${randomUUID()}.localhost`);
    expect(other.status).toBe(404);
    const outside = await openWebSocket(container.port, `/?token=${token}`);
    expect(outside.status).toBe(404);
    // Its own origin has no other websocket: answered, not left hanging.
    for (const [path, protocol] of [['/other', 'vite-hmr'], ['/', 'graphql-ws']]) {
      expect({ path, protocol, status: (await openWebSocket(container.port, `${path}?token=${token}`, previewHost, protocol)).status }).toEqual({ path, protocol, status: 404 });
    }
  });

  it('stops on SIGTERM with exit code 0 within 3 s', async () => {
    const t0 = Date.now();
    container.child.kill('SIGTERM');
    const code = await Promise.race([container.exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 3_500).unref())]);
    expect(code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(3_000);
    expect(() => process.kill(container.child.pid!, 0)).toThrow(); // gone
  });
});

describe('preview container given an unsafe file path', () => {
  it('refuses the list, exits 1 and writes nothing outside (or inside) WORK_DIR', async () => {
    const parent = tempDir('pc-evil-');
    const workDir = join(parent, 'work');
    const started = await spawnContainer({
      SESSION_ID: randomUUID(),
      PROJECT_ID: randomUUID(),
      WORK_DIR: workDir,
      FILES_URL: `${filesBase}/files/evil`,
      MACHINE_TOKEN: TOKEN,
    });
    let healthy = false;
    const code = await Promise.race([
      started.exited,
      (async () => {
        // Poll health until the process exits; it must never report 200.
        while (started.child.exitCode === null) {
          const res = await fetch(`http://127.0.0.1:${started.port}/health`).catch(() => null);
          if (res?.status === 200) healthy = true;
          await new Promise((r) => setTimeout(r, 50));
        }
        return started.child.exitCode;
      })(),
      new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 20_000).unref()),
    ]);
    expect(code).toBe(1);
    expect(healthy).toBe(false);
    expect(existsSync(join(parent, 'evil.js'))).toBe(false);
    expect(existsSync(join(workDir, 'index.html'))).toBe(false);
    expect(readdirSync(parent).filter((name) => name !== 'work')).toEqual([]);
    const failure = started.logs.map((line) => JSON.parse(line)).find((entry) => entry.msg === 'start failed');
    expect(failure?.err).toMatchObject({ type: 'UnsafePathError', message: 'Refusing file path "../evil.js": ".." segment', stack: expect.stringContaining('at ') });
  }, 30_000);
});

describe('preview container with a wrong configuration', () => {
  it('exits 1 with one line naming the variable', async () => {
    const started = await spawnContainer({ SESSION_ID: 'not-a-uuid' });
    expect(await started.exited).toBe(1);
    expect(started.logs).toEqual(['preview-container: Invalid environment: SESSION_ID must be a UUID']);
  });
});
