import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { FlyApiDouble, FlyProxyDouble, MAX_REPLAYS, nodeMachineRunner, type DoubleMachine } from '../src';

/**
 * FlyProxyDouble in front of machines that are small node servers on ::1. Each
 * serves one name (SERVES): a request whose Host is `<name>.localhost` gets its
 * echo (machine id, method, path, body, headers). For a name another machine
 * serves (ROUTES_FILE: name → machine id) it answers `fly-replay:
 * instance=<id>;state=from-<own id>`, HTTP and websocket upgrades alike; `loop`
 * replays to itself; for `shared` every machine answers, but the one named in
 * `x-decline` replays `elsewhere=true`; `favour` is replayed with
 * `prefer_instance=<the routes file's favour>`, then served. `/health` is 503
 * until `/become-healthy` when START_UNHEALTHY.
 */
const MACHINE_SCRIPT = `
const http = require('node:http');
const crypto = require('node:crypto');
const { readFileSync } = require('node:fs');
const { WebSocketServer } = require(process.env.WS_MODULE);
const me = process.env.FLY_MACHINE_ID;
let healthy = process.env.START_UNHEALTHY !== '1';
const routes = () => JSON.parse(readFileSync(process.env.ROUTES_FILE, 'utf8'));
const nameOf = (req) => String(req.headers.host || '').split('.')[0];

/** The fly-replay this machine answers a request with, or null when it serves it. */
function replayFor(req) {
  const name = nameOf(req);
  if (name === 'loop') return 'instance=' + me;
  if (name === 'shared') return req.headers['x-decline'] === me ? 'elsewhere=true' : null;
  if (name === 'favour') return req.headers['fly-replay-src'] ? null : 'prefer_instance=' + routes().favour;
  if (name === process.env.SERVES) return null;
  const owner = routes()[name];
  return owner ? 'instance=' + owner + ';state=from-' + me : undefined;
}

const server = http.createServer((req, res) => {
  if (req.url === '/health') return res.writeHead(healthy ? 200 : 503).end();
  if (req.url === '/become-healthy') { healthy = true; return res.end('ok'); }
  const replay = replayFor(req);
  if (replay === undefined) return res.writeHead(404, { 'content-type': 'text/plain' }).end('no such session');
  if (replay) {
    req.resume();
    return res.writeHead(409, { 'fly-replay': replay, 'content-type': 'text/plain' }).end('misrouted');
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    res.writeHead(200, { 'content-type': 'application/json', 'x-served-by': me });
    res.end(JSON.stringify({ machine: me, method: req.method, url: req.url, bodyLength: body.length, body: body.length < 1000 ? body.toString() : '', headers: req.headers }));
  });
});

const wss = new WebSocketServer({ noServer: true });
server.on('upgrade', (req, socket, head) => {
  const replay = replayFor(req);
  if (replay === null) {
    return wss.handleUpgrade(req, socket, head, (ws) => ws.on('message', (m) => ws.send(me + ':' + m + ':' + (req.headers['fly-replay-src'] || ''))));
  }
  const [status, extra, body] = replay ? ['409 Conflict', 'fly-replay: ' + replay + '\\r\\n', ''] : ['404 Not Found', '', 'no such session'];
  socket.end('HTTP/1.1 ' + status + '\\r\\n' + extra + 'content-length: ' + body.length + '\\r\\nconnection: close\\r\\n\\r\\n' + body);
});
server.listen(Number(process.env.PORT), process.env.HOST);
`;

const APP = 'vp-proxy-test';
const TOKEN = 'proxy-token';

let root: string;
let routesFile: string;
let api: FlyApiDouble;
let proxy: FlyProxyDouble;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'vp-fly-proxy-'));
  routesFile = join(root, 'routes.json');
  writeFileSync(join(root, 'machine.js'), MACHINE_SCRIPT);
});

beforeEach(async () => {
  writeFileSync(routesFile, '{}');
  const runner = nodeMachineRunner({ entry: join(root, 'machine.js'), env: { WS_MODULE: require.resolve('ws'), ROUTES_FILE: routesFile } });
  api = await FlyApiDouble.start({ token: TOKEN, apps: [APP], runMachine: runner, checkIntervalScale: 0.05 });
  proxy = await FlyProxyDouble.start({ api, app: APP });
});

afterEach(async () => {
  await proxy?.close();
  await api?.close();
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

async function createMachine(serves: string, env: Record<string, string> = {}): Promise<DoubleMachine> {
  const res = await fetch(`${api.url}/apps/${APP}/machines`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      config: {
        image: 'registry.fly.io/vp-proxy-test:1',
        env: { SERVES: serves, ...env },
        services: [
          {
            internal_port: 8080,
            protocol: 'tcp',
            ports: [{ port: 80, handlers: ['http'] }],
            checks: [{ type: 'http', port: 8080, path: '/health', interval: '1s', timeout: '1s' }],
          },
        ],
        auto_destroy: true,
      },
    }),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as DoubleMachine;
}

/** Machines serving each name, ready for the proxy, and the routes file naming them. */
async function machinesServing(...names: string[]): Promise<Record<string, string>> {
  const ids: Record<string, string> = {};
  for (const name of names) ids[name] = (await createMachine(name)).id;
  writeFileSync(routesFile, JSON.stringify(ids));
  for (const id of Object.values(ids)) await until(`machine ${id} to serve`, () => api.servesRequests(APP, id));
  return ids;
}

async function until<T>(what: string, probe: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function get(name: string, headers: Record<string, string> = {}, init: RequestInit = {}): Promise<Response> {
  return fetch(`http://${name}.localhost:${proxy.port}/page?x=1`, { ...init, headers });
}

/** The deliveries the proxy made since `from`. */
function deliveriesSince(from: number) {
  return proxy.requests.slice(from);
}

function openSocket(name: string, headers: Record<string, string> = {}): Promise<{ ws: WebSocket; status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/socket`, { headers: { host: `${name}.localhost:${proxy.port}`, ...headers } });
    ws.once('open', () => resolve({ ws, status: 101, body: '' }));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c));
      res.on('end', () => resolve({ ws, status: res.statusCode ?? 0, body }));
    });
    ws.once('error', reject);
  });
}

function nextMessage(ws: WebSocket): Promise<string> {
  return new Promise((resolve) => ws.once('message', (data) => resolve(String(data))));
}

describe('FlyProxyDouble', () => {
  it('listens on the same port on 127.0.0.1 and ::1, and sends requests of any Host to any machine that serves', async () => {
    const ids = await machinesServing('alpha', 'beta');
    for (const base of [`http://127.0.0.1:${proxy.port}`, `http://[::1]:${proxy.port}`]) {
      const res = await fetch(`${base}/health`);
      expect(res.status).toBe(200);
    }
    const before = proxy.requests.length;
    for (let i = 0; i < 30; i++) expect((await get('alpha')).status).toBe(200);
    const firstPicks = new Set(deliveriesSince(before).filter((d) => !d.replayedFrom).map((d) => d.machineId));
    // Random over both machines (all 30 on one: a chance of 2 in 2^30).
    expect(firstPicks).toEqual(new Set([ids.alpha, ids.beta]));
  });

  it('replays a POST (body and all) to the machine `fly-replay: instance=` names, with state in fly-replay-src; the client sees only the answer', async () => {
    const ids = await machinesServing('alpha', 'beta');
    const before = proxy.requests.length;
    const res = await get('beta', { 'fly-force-instance-id': ids.alpha, 'content-type': 'text/plain', 'fly-replay-src': 'forged' }, { method: 'POST', body: 'hello beta' });

    expect(res.status).toBe(200);
    expect(res.headers.get('fly-replay')).toBeNull();
    const echo = (await res.json()) as any;
    expect(echo).toMatchObject({ machine: ids.beta, method: 'POST', url: '/page?x=1', body: 'hello beta' });
    expect(echo.headers['fly-replay-src']).toMatch(new RegExp(`^instance=${ids.alpha};region=ord;t=\\d{16};state=from-${ids.alpha}$`));
    expect(deliveriesSince(before)).toEqual([
      { host: `beta.localhost:${proxy.port}`, path: '/page?x=1', machineId: ids.alpha },
      { host: `beta.localhost:${proxy.port}`, path: '/page?x=1', machineId: ids.beta, replayedFrom: ids.alpha },
    ]);
  });

  it("adds Fly's forwarding headers to the request and Via and Fly-Request-Id to the response", async () => {
    const ids = await machinesServing('alpha');
    const res = await get('alpha', { 'fly-client-ip': '6.6.6.6', 'fly-region': 'xxx', 'fly-replay-src': 'instance=forged', 'fly-preferred-instance-unavailable': 'forged' });
    const { headers } = (await res.json()) as any;
    expect(headers).toMatchObject({
      host: `alpha.localhost:${proxy.port}`,
      'fly-client-ip': '127.0.0.1',
      'x-forwarded-for': '127.0.0.1, 127.0.0.1',
      'x-forwarded-proto': 'http',
      'x-forwarded-port': String(proxy.port),
      'x-forwarded-ssl': 'off',
      'fly-forwarded-port': String(proxy.port),
      'fly-region': 'ord',
      via: '1.1 fly.io',
    });
    // Only the proxy sets these.
    expect(headers['fly-replay-src']).toBeUndefined();
    expect(headers['fly-preferred-instance-unavailable']).toBeUndefined();
    expect(res.headers.get('via')).toBe('1.1 fly.io');
    expect(res.headers.get('fly-request-id')).toMatch(/^[0-9A-Z]{26}-ord$/);
    expect(res.headers.get('x-served-by')).toBe(ids.alpha);
  });

  it('replays a websocket upgrade answered with fly-replay, then pipes the 101 both ways; other answers reach the client', async () => {
    const ids = await machinesServing('alpha', 'beta');
    const before = proxy.requests.length;
    const { ws, status } = await openSocket('beta', { 'fly-force-instance-id': ids.alpha });
    expect(status).toBe(101);
    const reply = nextMessage(ws);
    ws.send('ping');
    expect(await reply).toMatch(new RegExp(`^${ids.beta}:ping:instance=${ids.alpha};region=ord;t=\\d+;state=from-${ids.alpha}$`));
    ws.close();
    expect(deliveriesSince(before).map((d) => [d.machineId, d.replayedFrom])).toEqual([
      [ids.alpha, undefined],
      [ids.beta, ids.alpha],
    ]);

    const refused = await openSocket('nobody');
    expect(refused).toMatchObject({ status: 404, body: 'no such session' });
  });

  it('elsewhere=true sends the request to another machine than the one that answered it', async () => {
    const ids = await machinesServing('alpha', 'beta');
    for (let i = 0; i < 10; i++) {
      const before = proxy.requests.length;
      const res = await get('shared', { 'fly-force-instance-id': ids.alpha, 'x-decline': ids.alpha });
      expect(((await res.json()) as any).machine).toBe(ids.beta);
      expect(deliveriesSince(before).map((d) => d.machineId)).toEqual([ids.alpha, ids.beta]);
    }
  });

  it('prefer_instance sends the request to that machine when it serves, else to another with fly-preferred-instance-unavailable', async () => {
    const ids = await machinesServing('alpha', 'beta');
    writeFileSync(routesFile, JSON.stringify({ ...ids, favour: ids.beta }));
    const preferred = (await (await get('favour', { 'fly-force-instance-id': ids.alpha })).json()) as any;
    expect(preferred.machine).toBe(ids.beta);
    expect(preferred.headers['fly-preferred-instance-unavailable']).toBeUndefined();

    writeFileSync(routesFile, JSON.stringify({ ...ids, favour: '0123456789abcd' }));
    const fallback = (await (await get('favour', { 'fly-force-instance-id': ids.alpha })).json()) as any;
    expect([ids.alpha, ids.beta]).toContain(fallback.machine);
    expect(fallback.headers['fly-preferred-instance-unavailable']).toBe('0123456789abcd');
  });

  it('skips a machine whose service check fails, and sends it requests once the check passes', async () => {
    await machinesServing('alpha');
    const late = await createMachine('gamma', { START_UNHEALTHY: '1' });
    await until('the late machine to be probed', () => api.machines(APP).find((m) => m.id === late.id)?.checks?.[0]?.output.includes('503'));
    const before = proxy.requests.length;
    for (let i = 0; i < 15; i++) await get('alpha');
    expect(deliveriesSince(before).some((d) => d.machineId === late.id)).toBe(false);
    expect((await get('alpha', { 'fly-force-instance-id': late.id })).status).toBe(503);

    const endpoint = api.endpointOf(APP, late.id)!;
    expect(await (await fetch(`http://[${endpoint.host}]:${endpoint.port}/become-healthy`)).text()).toBe('ok');
    await until('the late machine to serve', () => api.servesRequests(APP, late.id));
    const after = proxy.requests.length;
    for (let i = 0; i < 30; i++) await get('alpha');
    expect(deliveriesSince(after).some((d) => d.machineId === late.id && !d.replayedFrom)).toBe(true);
  });

  it('fly-force-instance-id pins a machine, and is an error when that machine cannot serve', async () => {
    const ids = await machinesServing('alpha', 'beta');
    const before = proxy.requests.length;
    for (let i = 0; i < 10; i++) expect((await get('beta', { 'fly-force-instance-id': ids.beta })).status).toBe(200);
    expect(new Set(deliveriesSince(before).map((d) => d.machineId))).toEqual(new Set([ids.beta]));

    const missing = await get('beta', { 'fly-force-instance-id': '0123456789abcd' });
    expect(missing.status).toBe(503);
    expect(await missing.text()).toContain('[PR04]');
  });

  it('answers 503 (PR04) when no machine can serve, and when an instance replay names one that cannot', async () => {
    const none = await get('alpha');
    expect(none.status).toBe(503);
    expect(await none.text()).toMatch(/^\[PR04\] could not find a good candidate/);

    const ids = await machinesServing('alpha');
    writeFileSync(routesFile, JSON.stringify({ ...ids, ghost: '0123456789abcd' }));
    const replayedToNothing = await get('ghost');
    expect(replayedToNothing.status).toBe(503);
    expect(replayedToNothing.headers.get('fly-replay')).toBeNull();
    expect(await replayedToNothing.text()).toContain('0123456789abcd');
  });

  it(`cuts a replay loop after ${MAX_REPLAYS} replays (PA02)`, async () => {
    await machinesServing('alpha');
    const before = proxy.requests.length;
    const res = await get('loop');
    expect(res.status).toBe(502);
    expect(await res.text()).toContain('[PA02]');
    expect(deliveriesSince(before)).toHaveLength(MAX_REPLAYS + 1);
  });

  it('streams a body over 1 MiB to its machine, but cannot replay it (PA01)', async () => {
    const ids = await machinesServing('alpha', 'beta');
    const big = Buffer.alloc(1024 * 1024 + 10, 'a');
    const served = await post('alpha', ids.alpha, big);
    expect(served.status).toBe(200);
    expect(JSON.parse(served.body)).toMatchObject({ machine: ids.alpha, bodyLength: big.length });

    const misrouted = await post('alpha', ids.beta, big);
    expect(misrouted.status).toBe(502);
    expect(misrouted.body).toContain('[PA01]');
  });

  it('close() ends its connections, websockets included', async () => {
    await machinesServing('alpha');
    const { ws } = await openSocket('alpha');
    const closed = new Promise((resolve) => ws.once('close', resolve));
    await proxy.close();
    await closed;
    await expect(fetch(`http://127.0.0.1:${proxy.port}/`)).rejects.toThrow();
  });
});

/** A POST with a body node streams (fetch would buffer it anyway, but hides the early answer). */
function post(name: string, machineId: string, body: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port: proxy.port, method: 'POST', path: '/upload', headers: { host: `${name}.localhost`, 'fly-force-instance-id': machineId, 'content-length': body.length } },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
