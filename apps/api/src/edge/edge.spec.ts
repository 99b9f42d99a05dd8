import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, unixSocketUrl } from '@velocity/runtime';
import { upgradeHead } from '@velocity/testing';
import { createEdge, proxyTargetOf } from './edge';
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
  const clientAddresses: (string | undefined)[] = [];

  /** A machine that answers with what it was asked (its name, Host, path, forwarded-for), and accepts websocket upgrades. */
  function fakeMachine(name: string): Server {
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ name, host: req.headers.host, url: req.url, forwardedFor: req.headers['x-forwarded-for'] }));
    });
    server.on('upgrade', (_req: IncomingMessage, socket: Socket) => {
      socket.end(`HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nx-machine: ${name}\r\n\r\n`);
    });
    machines.push(server);
    return server;
  }

  /** A route id whose machine is at `url`. */
  function route(url: string): string {
    const routeId = randomUUID();
    targets.set(routeId, url);
    return routeId;
  }

  const previewUrl = (routeId: string, path = '/') => `http://${routeId}.localhost:${edgePort}${path}`;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vp-edge-'));
    const routes = {
      resolve: async (routeId: string, clientAddress?: string): Promise<Route> => {
        clientAddresses.push(clientAddress);
        if (limitedIds.has(routeId)) return { kind: 'limited', retryAfterSeconds: 17 };
        return targets.has(routeId) ? { kind: 'route', target: targets.get(routeId)! } : { kind: 'unknown' };
      },
      forget: (routeId: string) => forgotten.push(routeId),
    } as unknown as SessionRoutes;
    const handlers = createEdge(routes, createLogger('edge-test', 'silent'), {
      previewDomain: 'localhost',
      previewOriginOf: (routeId) => `http://${routeId}.localhost`,
      servesPreviews: true,
    });
    edge = createServer((req, res) =>
      handlers.middleware(req, res, () => {
        res.writeHead(404);
        res.end('not a preview');
      }),
    );
    edge.on('upgrade', handlers.upgrade);
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
    expect(await res.json()).toEqual({ name: 'on a socket', host: `${routeId}.localhost:${edgePort}`, url: '/src/App.jsx?t=1', forwardedFor: '127.0.0.1' });
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
    const routes = { resolve: async (routeId: string) => (resolved.push(routeId), { kind: 'unknown' }), forget: () => undefined } as unknown as SessionRoutes;
    const handlers = createEdge(routes, createLogger('edge-test', 'silent'), { previewDomain: 'localhost', previewOriginOf: (id) => `http://${id}.localhost`, servesPreviews: false });
    edge = createServer((req, res) => handlers.middleware(req, res, () => res.writeHead(200).end('the api')));
    edge.on('upgrade', handlers.upgrade);
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

describe('proxyTargetOf', () => {
  it("is the socket of a machine on a Unix socket, else the machine's URL", () => {
    expect(proxyTargetOf('http://unix:/srv/m/http.sock:')).toEqual({ socketPath: '/srv/m/http.sock', host: 'localhost', port: 80 });
    expect(proxyTargetOf('http://127.0.0.1:4000')).toBe('http://127.0.0.1:4000');
    expect(proxyTargetOf(undefined)).toBeUndefined();
  });
});
