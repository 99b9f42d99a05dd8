import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { Agent, createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, lookupLocalhostNames, unixSocketUrl } from '@velocity/runtime';
import { upgradeHead } from '@velocity/testing';
import { createEdge, proxyTargetOf, putEdgeInFront } from './edge';
import type { Route, SessionRoutes } from './session-routes';

/**
 * The edge proxies a preview's requests (and its HMR websocket) to the
 * session's machine, whatever kind of address the machine has: a Unix socket
 * (a sandboxed local machine), an IPv6 literal, an IPv4 one.
 */
describe('the edge', () => {
  let dir: string;
  let edge: Server;
  let edgePort: number;
  const machines: Server[] = [];
  const targets = new Map<string, string>();
  const forgotten: string[] = [];
  /** Route ids the stand-in answers as from a client past its misses, and the client addresses it was given. */
  const limitedIds = new Set<string>();
  /** Route ids whose session has ended. */
  const goneIds = new Set<string>();
  const clientAddresses: (string | undefined)[] = [];

  /** Connections each machine (by name) was opened, by the edge's agent. */
  const connections = new Map<string, number>();

  /** A machine that answers with what it was asked (its name, Host, path, forwarded-for, request id), and accepts websocket upgrades. */
  function fakeMachine(name: string): Server {
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ name, host: req.headers.host, url: req.url, forwardedFor: req.headers['x-forwarded-for'], requestId: req.headers['x-request-id'] }));
    });
    server.on('connection', () => connections.set(name, (connections.get(name) ?? 0) + 1));
    server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
      socket.end(`HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nx-machine: ${name}\r\nx-request-id: ${req.headers['x-request-id']}\r\n\r\n`);
    });
    machines.push(server);
    return server;
  }

  /** A machine on a port of 127.0.0.1. */
  async function machineOnPort(name: string): Promise<{ port: number }> {
    const server = fakeMachine(name);
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    return { port: (server.address() as AddressInfo).port };
  }

  /** A route id whose machine is at `url`. */
  function route(url: string): string {
    const routeId = randomUUID();
    targets.set(routeId, url);
    return routeId;
  }

  const previewUrl = (routeId: string, path = '/') => `http://${routeId}.localhost:${edgePort}${path}`;

  /** Route ids whose machine the stand-in holds in memory (`cached`), and how many look-ups `resolve` was asked. */
  const held = new Set<string>();
  let lookups = 0;
  /** Route ids whose look-up fails with this error. */
  const failing = new Map<string, Error>();
  /** What reached the api's own listener (by Host), and the preview requests observed for the metrics. */
  const apiRequests: string[] = [];
  const observed: { method: string; status: number; route?: string }[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vp-edge-'));
    const routes = {
      cached: (routeId: string) => (held.has(routeId) ? targets.get(routeId) : undefined),
      resolve: async (routeId: string, clientAddress?: string): Promise<Route> => {
        lookups++;
        clientAddresses.push(clientAddress);
        if (failing.has(routeId)) throw failing.get(routeId);
        if (limitedIds.has(routeId)) return { kind: 'limited', retryAfterSeconds: 17 };
        if (goneIds.has(routeId)) return { kind: 'gone' };
        return targets.has(routeId) ? { kind: 'route', target: targets.get(routeId)! } : { kind: 'unknown' };
      },
      forget: (routeId: string) => forgotten.push(routeId),
    } as unknown as SessionRoutes;
    const handlers = createEdge(routes, createLogger('edge-test', 'silent'), {
      previewDomain: 'localhost',
      previewOriginOf: (routeId) => `http://${routeId}.localhost`,
      servesPreviews: true,
      observe: ({ method, status, route }) => observed.push({ method, status, route }),
    });
    // The api's own listener (the Express app Nest makes the server with), put behind the edge.
    edge = createServer((req, res) => {
      apiRequests.push(req.headers.host ?? '');
      res.writeHead(200).end('the api');
    });
    putEdgeInFront(edge, handlers);
    await new Promise<void>((done) => edge.listen(0, '127.0.0.1', done));
    edgePort = (edge.address() as AddressInfo).port;
  });

  afterAll(async () => {
    await Promise.all([edge, ...machines].map((server) => new Promise((done) => server?.close(done))));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('proxies a preview to a machine on a Unix socket, Host, path and query as the browser sent them', async () => {
    const socketPath = join(dir, 'machine.sock');
    await new Promise<void>((done) => fakeMachine('on a socket').listen(socketPath, done));
    const routeId = route(unixSocketUrl(socketPath));
    const res = await fetch(previewUrl(routeId, '/src/App.jsx?t=1'));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ name: 'on a socket', host: `${routeId}.localhost:${edgePort}`, url: '/src/App.jsx?t=1', forwardedFor: '127.0.0.1', requestId: expect.any(String) });
  });

  it("serves previews ahead of the api's own listener, which gets every other request and no preview", async () => {
    const server = await machineOnPort('beside the api');
    const routeId = route(`http://127.0.0.1:${server.port}`);
    apiRequests.length = 0;
    const preview = await fetch(previewUrl(routeId, '/v1/sessions'));
    expect(await preview.json()).toMatchObject({ name: 'beside the api', url: '/v1/sessions' });
    expect((await fetch(previewUrl(randomUUID(), '/health'))).status).toBe(404);
    expect((await fetch(`http://not-a-route.localhost:${edgePort}/health`)).status).toBe(404);
    expect(await (await fetch(`http://127.0.0.1:${edgePort}/health`)).text()).toBe('the api');
    expect(apiRequests).toEqual([`127.0.0.1:${edgePort}`]);
  });

  it("forwards the request's id to the machine and echoes it: the client's when it is a safe token, else a new one; on upgrades too", async () => {
    const server = await machineOnPort('ids');
    const routeId = route(`http://127.0.0.1:${server.port}`);
    const given = await fetch(previewUrl(routeId), { headers: { 'x-request-id': 'client-id-1' } });
    expect(given.headers.get('x-request-id')).toBe('client-id-1');
    expect(await given.json()).toMatchObject({ requestId: 'client-id-1' });
    const unsafe = await fetch(previewUrl(routeId), { headers: { 'x-request-id': 'no spaces <allowed>' } });
    const { requestId } = (await unsafe.json()) as { requestId: string };
    expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(unsafe.headers.get('x-request-id')).toBe(requestId);
    const head = await upgradeHead({ port: edgePort }, `${routeId}.localhost:${edgePort}`, { headers: { 'x-request-id': 'client-ws-1' } });
    expect(head).toMatch(/^HTTP\/1\.1 101 /);
    expect(head).toContain('x-request-id: client-ws-1');
  });

  it('proxies a route held in memory without looking it up', async () => {
    const server = await machineOnPort('held');
    const routeId = route(`http://127.0.0.1:${server.port}`);
    held.add(routeId);
    const before = lookups;
    for (let i = 0; i < 3; i++) expect(await (await fetch(previewUrl(routeId))).json()).toMatchObject({ name: 'held' });
    expect(lookups).toBe(before);
  });

  it('keeps its connections to machines alive, on a Unix socket and on TCP, and the browser keeps its own', async () => {
    const socketPath = join(dir, 'kept.sock');
    await new Promise<void>((done) => fakeMachine('kept on a socket').listen(socketPath, done));
    const onPort = await machineOnPort('kept on a port');
    const client = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (const [name, url] of [['kept on a socket', unixSocketUrl(socketPath)], ['kept on a port', `http://127.0.0.1:${onPort.port}`]]) {
        const routeId = route(url);
        const reused: boolean[] = [];
        for (let i = 0; i < 4; i++) {
          const answer = await get(previewUrl(routeId), client);
          expect(answer).toMatchObject({ status: 200, body: expect.stringContaining(name) });
          reused.push(answer.reusedSocket);
        }
        expect(connections.get(name)).toBe(1);
        expect(reused.slice(1)).toEqual([true, true, true]);
      }
    } finally {
      client.destroy();
    }
  });

  it('answers 404 for an unknown route and 410 for an ended session, on HTTP and upgrades', async () => {
    const unknown = randomUUID();
    const res = await fetch(previewUrl(unknown));
    expect({ status: res.status, body: await res.json() }).toEqual({ status: 404, body: { error: 'Session not found', routeId: unknown } });
    expect(await upgradeHead({ port: edgePort }, `${unknown}.localhost:${edgePort}`)).toMatch(/^HTTP\/1\.1 404 Not Found\r\n/);
    const ended = randomUUID();
    goneIds.add(ended);
    const gone = await fetch(previewUrl(ended));
    expect({ status: gone.status, body: await gone.json() }).toEqual({ status: 410, body: { error: 'Session ended', routeId: ended } });
    expect(await upgradeHead({ port: edgePort }, `${ended}.localhost:${edgePort}`)).toMatch(/^HTTP\/1\.1 410 Gone\r\n/);
  });

  it('answers 503 with Retry-After when the session store does not answer, 500 on another failure, and keeps serving', async () => {
    const outage = randomUUID();
    failing.set(outage, new Error('timeout exceeded when trying to connect'));
    const res = await fetch(previewUrl(outage));
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('2');
    expect(await res.json()).toMatchObject({ statusCode: 503, dependency: 'database', retryAfterSeconds: 2, routeId: outage });
    expect(await upgradeHead({ port: edgePort }, `${outage}.localhost:${edgePort}`)).toMatch(/^HTTP\/1\.1 503 Service Unavailable\r\nretry-after: 2\r\n/);
    const broken = randomUUID();
    failing.set(broken, new Error('a bug'));
    const failed = await fetch(previewUrl(broken));
    expect({ status: failed.status, body: await failed.json() }).toEqual({ status: 500, body: { error: 'Internal server error', routeId: broken } });
    const server = await machineOnPort('after the failures');
    expect(await (await fetch(previewUrl(route(`http://127.0.0.1:${server.port}`)))).json()).toMatchObject({ name: 'after the failures' });
  });

  it('counts each preview request for the metrics, as the route `preview`, with its status', async () => {
    const server = await machineOnPort('counted');
    const routeId = route(`http://127.0.0.1:${server.port}`);
    observed.length = 0;
    await (await fetch(previewUrl(routeId), { method: 'POST', body: 'x' })).text();
    await (await fetch(previewUrl(randomUUID()))).text();
    await until(() => observed.length === 2);
    expect(observed).toEqual([
      { method: 'POST', status: 200, route: 'preview' },
      { method: 'GET', status: 404, route: 'preview' },
    ]);
  });

  it("hands a preview's websocket upgrade to its machine on a Unix socket", async () => {
    const socketPath = join(dir, 'hmr.sock');
    await new Promise<void>((done) => fakeMachine('hmr').listen(socketPath, done));
    const routeId = route(unixSocketUrl(socketPath));
    const head = await upgradeHead({ port: edgePort }, `${routeId}.localhost:${edgePort}`);
    expect(head).toMatch(/^HTTP\/1\.1 101 /);
    expect(head).toContain('x-machine: hmr');
  });

  it('answers 502 for a machine whose socket is gone, and forgets its route', async () => {
    const routeId = route(unixSocketUrl(join(dir, 'gone.sock')));
    const res = await fetch(previewUrl(routeId));
    expect(res.status).toBe(502);
    expect(await res.json()).toEqual({ error: 'Preview machine unreachable', routeId });
    expect(forgotten).toContain(routeId);
  });

  it('proxies to a machine at an IPv6 literal, and keeps serving after it', async () => {
    const server = fakeMachine('on ::1');
    await new Promise<void>((done) => server.listen(0, '::1', done));
    const routeId = route(`http://[::1]:${(server.address() as AddressInfo).port}`);
    for (let i = 0; i < 2; i++) {
      const res = await fetch(previewUrl(routeId));
      expect({ status: res.status, body: await res.json() }).toMatchObject({ status: 200, body: { name: 'on ::1' } });
    }
  });

  it('answers a client past EDGE_MISSES_PER_MINUTE 429 with Retry-After, naming the limit, on HTTP and websocket upgrades', async () => {
    const routeId = randomUUID();
    limitedIds.add(routeId);
    clientAddresses.length = 0;
    const res = await fetch(previewUrl(routeId));
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('17');
    expect(await res.json()).toEqual({ error: expect.stringContaining('EDGE_MISSES_PER_MINUTE'), limit: 'EDGE_MISSES_PER_MINUTE', retryAfterSeconds: 17 });
    const head = await upgradeHead({ port: edgePort }, `${routeId}.localhost:${edgePort}`);
    expect(head).toMatch(/^HTTP\/1\.1 429 Too Many Requests\r\nretry-after: 17\r\n/);
    // Each lookup spends the budget of the request's own address.
    expect(clientAddresses).toEqual(['127.0.0.1', '127.0.0.1']);
  });

  it('proxies to a machine on 127.0.0.1', async () => {
    const server = fakeMachine('on 127.0.0.1');
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    const routeId = route(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    const res = await fetch(previewUrl(routeId, '/x'));
    expect(await res.json()).toMatchObject({ name: 'on 127.0.0.1', url: '/x' });
  });
});

describe('the edge of an api whose previews Fly.io routes', () => {
  let edge: Server;
  let port: number;
  const resolved: string[] = [];

  beforeAll(async () => {
    const routes = { cached: () => undefined, resolve: async (routeId: string) => (resolved.push(routeId), { kind: 'unknown' }), forget: () => undefined } as unknown as SessionRoutes;
    const handlers = createEdge(routes, createLogger('edge-test', 'silent'), { previewDomain: 'localhost', previewOriginOf: (id) => `http://${id}.localhost`, servesPreviews: false });
    edge = createServer((_req, res) => res.writeHead(200).end('the api'));
    putEdgeInFront(edge, handlers);
    await new Promise<void>((done) => edge.listen(0, '127.0.0.1', done));
    port = (edge.address() as AddressInfo).port;
  });

  afterAll(() => new Promise((done) => edge.close(done)));

  it('answers a preview request 421 (its DNS points at the api by mistake), never looking the route up, and serves the api', async () => {
    const routeId = randomUUID();
    const res = await fetch(`http://${routeId}.localhost:${port}/`);
    expect(res.status).toBe(421);
    expect(await res.json()).toMatchObject({ field: 'host', error: expect.stringMatching(/preview app/) });
    expect(await upgradeHead({ port }, `${routeId}.localhost:${port}`)).toMatch(/^HTTP\/1\.1 421 Misdirected Request/);
    expect(resolved).toEqual([]);
    expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe('the api');
  });
});

describe('legacy preview links', () => {
  it('answers /p/<routeId>/rest on the api origin 308 to the preview origin, and passes anything else on', () => {
    const routes = {} as SessionRoutes;
    const { legacyLinks } = createEdge(routes, createLogger('edge-test', 'silent'), { previewDomain: 'localhost', previewOriginOf: (id) => `http://${id}.localhost`, servesPreviews: true });
    const routeId = randomUUID();
    const res = { writeHead: jest.fn(), end: jest.fn() };
    const next = jest.fn();
    legacyLinks({ url: `/p/${routeId}/src/main.js?t=1` } as IncomingMessage, res as unknown as ServerResponse, next);
    expect(res.writeHead).toHaveBeenCalledWith(308, { location: `http://${routeId}.localhost/src/main.js?t=1`, 'content-length': 0 });
    legacyLinks({ url: '/p/not-an-id/' } as IncomingMessage, res as unknown as ServerResponse, next);
    legacyLinks({ url: '/v1/sessions' } as IncomingMessage, res as unknown as ServerResponse, next);
    expect(next).toHaveBeenCalledTimes(2);
    expect(res.writeHead).toHaveBeenCalledTimes(1);
  });
});

/** A GET over `agent`: status, body, and whether the agent reused a connection for it. */
function get(url: string, agent: Agent): Promise<{ status: number; body: string; reusedSocket: boolean }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent, lookup: lookupLocalhostNames }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, reusedSocket: req.reusedSocket }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Waits for something the server does after it answered (at most a few seconds). */
async function until(condition: () => boolean): Promise<void> {
  for (let waited = 0; !condition() && waited < 5_000; waited += 10) await new Promise((resolve) => setTimeout(resolve, 10));
}

describe('proxyTargetOf', () => {
  it("is the socket of a machine on a Unix socket, else the machine's URL", () => {
    expect(proxyTargetOf('http://unix:/srv/m/http.sock:')).toEqual({ socketPath: '/srv/m/http.sock', host: 'localhost', port: 80 });
    expect(proxyTargetOf('http://127.0.0.1:4000')).toBe('http://127.0.0.1:4000');
    expect(proxyTargetOf(undefined)).toBeUndefined();
  });
});
