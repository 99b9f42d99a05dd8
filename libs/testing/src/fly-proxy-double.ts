/**
 * A local stand-in for Fly's proxy in front of one app of FlyApiDouble: an HTTP
 * server (in the test's process) on one port of both 127.0.0.1 and ::1, as
 * browsers resolve `*.localhost` to either. It routes to the machines' real
 * processes (FlyApiDouble with `runMachine`).
 *
 * What it does, from Fly's published docs (superfly/docs):
 * - Routing: each request, whatever its Host, goes to a random machine of the app
 *   that serves requests: `started`, with a service, every service check passing
 *   (reference/health-checks: "If a Machine fails its service check ... it won't be
 *   routed to until its checks start passing"; top-level checks do not count).
 *   `fly-force-instance-id: <id>` pins a machine, with "No fallback if Machine is
 *   ultimately unavailable" (networking/dynamic-request-routing).
 * - Request headers (networking/request-headers): Fly-Client-IP, Fly-Forwarded-Port,
 *   Fly-Region (the edge's region: here the API double's default region),
 *   X-Forwarded-For (the client, then the app's address rightmost),
 *   X-Forwarded-Proto, X-Forwarded-Port (kept when the client set it),
 *   X-Forwarded-SSL, Via (`1.1 fly.io`). Responses get Via and Fly-Request-Id
 *   (machines-resource, `http_options.response.pristine`: "Server, Via,
 *   Fly-Request-Id"). X-Request-Start is not among Fly's documented headers: not sent.
 * - `fly-replay` (networking/dynamic-request-routing): a response carrying it is not
 *   sent to the client; the request is replayed: `instance=<id>` to that machine,
 *   `prefer_instance=<id>` to it if it serves (else another, with the
 *   `fly-preferred-instance-unavailable` request header), `elsewhere=true` to another
 *   machine than the responder, `region=` ignored (one region here: any), `app=` only
 *   this app. The replayed request carries `fly-replay-src:
 *   instance=<responder>;region=<its region>;t=<µs since the epoch>;state=<state>`.
 *   "Requests larger than 1MB cannot be replayed": bodies up to 1 MiB are buffered;
 *   a larger one is streamed to the first machine and a replay of it is refused
 *   (docs/reference/error-codes PA01). A websocket upgrade is routed the same way:
 *   a non-101 answer with `fly-replay` is replayed, a 101 is piped both ways.
 *   `fly-replay` and `fly-replay-cache*` never reach the client.
 * - Errors carry Fly's codes (reference/error-codes): PR04 when no machine can take
 *   the request, PA01/PA02/PA03/PA04 for replays that cannot be done, PU02 when a
 *   machine's answer fails. Fly's pages give no status codes: 503 is assumed for
 *   "no candidate" (no machine is ready yet), 502 for the rest.
 * - Replays are cut after MAX_REPLAYS: Fly documents only that it stops
 *   (PA02 "'fly-replay' response header was returned too many times").
 *
 * Not modelled: the JSON replay body, `timeout`/`fallback`, replay caching,
 * `fly-prefer-region`/`fly-force-region`, concurrency limits, autostart, retries on
 * connection errors, TLS.
 */
import { randomBytes } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { DoubleMachine, FlyApiDouble } from './fly-api-double';

/** Fly replays requests up to 1 MB; a body up to this many bytes is buffered for a replay. */
export const MAX_REPLAY_BODY_BYTES = 1024 * 1024;
/**
 * Replays of one request before the proxy gives up. Our machines need one (a
 * misrouted request goes to its session's machine) or two (that machine was
 * replaced meanwhile); ten leaves room for `elsewhere` walks over several machines
 * while a loop between two machines still ends within milliseconds.
 */
export const MAX_REPLAYS = 10;

export interface FlyProxyDoubleOptions {
  api: FlyApiDouble;
  app: string;
  /** 0 (default): a free port, the same on 127.0.0.1 and ::1. */
  port?: number;
  /** The edge's region in `Fly-Region` (the API double's default region). */
  region?: string;
}

/** One delivery of a request to a machine. */
export interface ProxiedRequest {
  host: string;
  path: string;
  machineId: string;
  /** The machine whose `fly-replay` sent the request here. */
  replayedFrom?: string;
}

/** Where the next delivery of a request goes. */
interface Route {
  instance?: string;
  preferInstance?: string;
  exclude?: string;
  replaySrc?: string;
  replayedFrom?: string;
}

interface Target {
  machine: DoubleMachine;
  host: string;
  port: number;
  preferredUnavailable?: string;
}

interface BufferedBody {
  chunks: Buffer[];
  /** The whole body is in `chunks` (it fit the replay buffer). */
  complete: boolean;
}

type UpgradeAnswer = { kind: 'upgrade'; res: IncomingMessage; socket: Duplex; head: Buffer } | { kind: 'response'; res: IncomingMessage };

class ProxyError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Set by the proxy alone: a client's own values are dropped. */
const PROXY_SET_HEADERS = ['fly-client-ip', 'fly-forwarded-port', 'fly-region', 'fly-replay-src', 'fly-preferred-instance-unavailable', 'x-forwarded-proto', 'x-forwarded-ssl'];
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade'];
const REPLAY_FIELDS = new Set(['region', 'instance', 'prefer_instance', 'app', 'state', 'elsewhere', 'timeout', 'fallback']);

export class FlyProxyDouble {
  port = 0;
  url = '';
  readonly requests: ProxiedRequest[] = [];

  private readonly api: FlyApiDouble;
  private readonly app: string;
  private readonly region: string;
  private readonly servers: Server[] = [];
  private readonly tunnels = new Set<Duplex>();

  private constructor(options: FlyProxyDoubleOptions) {
    this.api = options.api;
    this.app = options.app;
    this.region = options.region ?? options.api.defaultRegion;
  }

  static async start(options: FlyProxyDoubleOptions): Promise<FlyProxyDouble> {
    for (let attempt = 1; ; attempt++) {
      const proxy = new FlyProxyDouble(options);
      try {
        await proxy.listen(options.port ?? 0);
        return proxy;
      } catch (error) {
        await proxy.close();
        // The port free on 127.0.0.1 was taken on ::1: another pick.
        const taken = (error as NodeJS.ErrnoException).code === 'EADDRINUSE';
        if (!taken || options.port || attempt >= 5) throw error;
      }
    }
  }

  async close(): Promise<void> {
    for (const socket of this.tunnels) socket.destroy();
    this.tunnels.clear();
    await Promise.all(
      this.servers.map((server) => {
        server.closeAllConnections();
        return new Promise<void>((resolve) => server.close(() => resolve()));
      }),
    );
  }

  private async listen(port: number): Promise<void> {
    this.port = await this.listenOn(port, '127.0.0.1');
    await this.listenOn(this.port, '::1');
    this.url = `http://127.0.0.1:${this.port}`;
  }

  private listenOn(port: number, host: string): Promise<number> {
    const server = createServer((req, res) => void this.handleRequest(req, res));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => void this.handleUpgrade(req, socket, head));
    this.servers.push(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port, host, ipv6Only: host === '::1' }, () => resolve((server.address() as AddressInfo).port));
    });
  }

  // ---- HTTP ----------------------------------------------------------------

  private async handleRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = flyRequestId(this.region);
    const clientGone = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) clientGone.abort();
    });
    try {
      const body = await bufferBody(req, MAX_REPLAY_BODY_BYTES);
      let route = this.firstRoute(req);
      for (let replays = 1; ; replays++) {
        const target = this.choose(route);
        const answer = await this.forward(req, body, target, route, clientGone.signal);
        const replay = answer.headers['fly-replay'];
        if (replay === undefined) return this.respond(res, answer, requestId);
        answer.resume();
        if (!body.complete) {
          throw new ProxyError(502, 'PA01', "cannot retry/replay request because request body has been read past what we're willing to buffer");
        }
        route = this.replayRoute(String(replay), target, replays);
      }
    } catch (error) {
      if (!clientGone.signal.aborted) this.fail(res, error, requestId);
    }
  }

  private forward(req: IncomingMessage, body: BufferedBody, target: Target, route: Route, signal: AbortSignal): Promise<IncomingMessage> {
    this.record(req, target, route);
    return new Promise((resolve, reject) => {
      const upstream = httpRequest(
        { host: target.host, port: target.port, method: req.method, path: req.url, headers: this.forwardedHeaders(req, target, route), agent: false, signal },
        resolve,
      );
      upstream.on('error', (error) => reject(answerFailed(target, error)));
      for (const chunk of body.chunks) upstream.write(chunk);
      // Too large to buffer: the rest goes straight through, and no replay is possible.
      if (body.complete) upstream.end();
      else req.pipe(upstream);
    });
  }

  private respond(res: ServerResponse, answer: IncomingMessage, requestId: string): void {
    res.writeHead(answer.statusCode ?? 502, answer.statusMessage, this.clientHeaders(answer.headers, requestId, false));
    answer.pipe(res);
  }

  private fail(res: ServerResponse, error: unknown, requestId: string): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const { status, code, message } = asProxyError(error);
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'fly-request-id': requestId, via: '1.1 fly.io' }).end(`[${code}] ${message}\n`);
  }

  // ---- websocket upgrades --------------------------------------------------

  private async handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const requestId = flyRequestId(this.region);
    socket.on('error', () => socket.destroy());
    try {
      let route = this.firstRoute(req);
      for (let replays = 1; ; replays++) {
        const target = this.choose(route);
        const answer = await this.forwardUpgrade(req, target, route);
        if (answer.kind === 'upgrade') return this.tunnel(socket, head, answer, requestId);
        const replay = answer.res.headers['fly-replay'];
        if (replay === undefined) return await this.relayAnswer(socket, answer.res, requestId);
        answer.res.resume();
        route = this.replayRoute(String(replay), target, replays);
      }
    } catch (error) {
      const { status, code, message } = asProxyError(error);
      const text = `[${code}] ${message}\n`;
      socket.end(rawHead(status, undefined, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text), connection: 'close', 'fly-request-id': requestId, via: '1.1 fly.io' }) + text);
    }
  }

  private forwardUpgrade(req: IncomingMessage, target: Target, route: Route): Promise<UpgradeAnswer> {
    this.record(req, target, route);
    return new Promise((resolve, reject) => {
      const upstream = httpRequest({ host: target.host, port: target.port, method: req.method, path: req.url, headers: this.forwardedHeaders(req, target, route, true), agent: false });
      upstream.once('upgrade', (res, socket, head) => resolve({ kind: 'upgrade', res, socket, head }));
      upstream.once('response', (res) => resolve({ kind: 'response', res }));
      upstream.on('error', (error) => reject(answerFailed(target, error)));
      upstream.end();
    });
  }

  /** A 101: the machine's answer to the client, then bytes both ways until either side closes. */
  private tunnel(client: Duplex, clientHead: Buffer, answer: Extract<UpgradeAnswer, { kind: 'upgrade' }>, requestId: string): void {
    const machine = answer.socket;
    client.write(rawHead(101, answer.res.statusMessage, this.clientHeaders(answer.res.headers, requestId, true)));
    if (answer.head.length > 0) client.write(answer.head);
    if (clientHead.length > 0) machine.write(clientHead);
    for (const socket of [client, machine]) {
      this.tunnels.add(socket);
      socket.once('close', () => {
        this.tunnels.delete(socket);
        client.destroy();
        machine.destroy();
      });
    }
    machine.on('error', () => machine.destroy());
    machine.pipe(client);
    client.pipe(machine);
  }

  /** Any other answer to an upgrade reaches the client whole, and the connection ends. */
  private async relayAnswer(socket: Duplex, res: IncomingMessage, requestId: string): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of res) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const headers = { ...this.clientHeaders(res.headers, requestId, false), 'content-length': body.length, connection: 'close' };
    socket.write(rawHead(res.statusCode ?? 502, res.statusMessage, headers));
    socket.end(body);
  }

  // ---- routing -------------------------------------------------------------

  private firstRoute(req: IncomingMessage): Route {
    const forced = req.headers['fly-force-instance-id'];
    return typeof forced === 'string' && forced ? { instance: forced } : {};
  }

  /** The machine a delivery goes to; a ProxyError when none can take it. */
  private choose(route: Route): Target {
    if (route.instance) {
      const target = this.targetOf(route.instance);
      if (!target) throw new ProxyError(503, 'PR04', `could not find a good candidate: machine ${route.instance} cannot serve requests`);
      return target;
    }
    const preferred = route.preferInstance ? this.targetOf(route.preferInstance) : null;
    if (preferred) return preferred;
    const candidates = this.api.routableMachines(this.app).filter((m) => m.id !== route.exclude);
    if (candidates.length === 0) throw new ProxyError(503, 'PR04', `could not find a good candidate within 1 attempts at load balancing (no machine of ${this.app} passes its service checks)`);
    const target = this.targetOf(candidates[Math.floor(Math.random() * candidates.length)].id);
    if (!target) throw new ProxyError(503, 'PR04', 'could not find a good candidate within 1 attempts at load balancing');
    return route.preferInstance ? { ...target, preferredUnavailable: route.preferInstance } : target;
  }

  private targetOf(machineId: string): Target | null {
    if (!this.api.servesRequests(this.app, machineId)) return null;
    const machine = this.api.machines(this.app).find((m) => m.id === machineId);
    const endpoint = this.api.endpointOf(this.app, machineId);
    return machine && endpoint ? { machine, ...endpoint } : null;
  }

  /** Where a `fly-replay` answer of `responder` sends the request next. */
  private replayRoute(header: string, responder: Target, replays: number): Route {
    if (replays > MAX_REPLAYS) throw new ProxyError(502, 'PA02', "'fly-replay' response header was returned too many times, stopping there");
    const fields = parseReplay(header);
    if (!fields) throw new ProxyError(502, 'PA03', `could not parse 'fly-replay' response header returned by app: ${header}`);
    if (fields.app !== undefined && fields.app !== this.app) {
      throw new ProxyError(502, 'PA04', `app '${this.app}' used 'fly-replay' response header to target app '${fields.app}', which we cannot find`);
    }
    const source = [`instance=${responder.machine.id}`, `region=${responder.machine.region}`, `t=${microsecondsNow()}`];
    if (fields.state !== undefined) source.push(`state=${fields.state}`);
    return {
      instance: fields.instance,
      preferInstance: fields.prefer_instance,
      exclude: fields.elsewhere === 'true' ? responder.machine.id : undefined,
      replaySrc: source.join(';'),
      replayedFrom: responder.machine.id,
    };
  }

  private record(req: IncomingMessage, target: Target, route: Route): void {
    const delivery: ProxiedRequest = { host: req.headers.host ?? '', path: req.url ?? '/', machineId: target.machine.id };
    if (route.replayedFrom) delivery.replayedFrom = route.replayedFrom;
    this.requests.push(delivery);
  }

  // ---- headers -------------------------------------------------------------

  /** The client's headers (less hop-by-hop ones, but an upgrade's own) with Fly's. */
  private forwardedHeaders(req: IncomingMessage, target: Target, route: Route, upgrade = false): OutgoingHttpHeaders {
    const dropped = new Set([...PROXY_SET_HEADERS, ...(upgrade ? [] : HOP_BY_HOP)]);
    const headers: OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(req.headers)) if (value !== undefined && !dropped.has(name)) headers[name] = value;
    const clientIp = plainIp(req.socket.remoteAddress ?? '');
    const localPort = String(req.socket.localPort ?? this.port);
    Object.assign(headers, {
      'fly-client-ip': clientIp,
      'x-forwarded-for': [req.headers['x-forwarded-for'], clientIp, plainIp(req.socket.localAddress ?? '')].filter(Boolean).join(', '),
      'x-forwarded-proto': 'http',
      'x-forwarded-ssl': 'off',
      'x-forwarded-port': req.headers['x-forwarded-port'] ?? localPort,
      'fly-forwarded-port': localPort,
      'fly-region': this.region,
      via: [req.headers.via, `${req.httpVersion === '2.0' ? '2' : req.httpVersion} fly.io`].filter(Boolean).join(', '),
    });
    if (route.replaySrc) headers['fly-replay-src'] = route.replaySrc;
    if (target.preferredUnavailable) headers['fly-preferred-instance-unavailable'] = target.preferredUnavailable;
    return headers;
  }

  /** A machine's response headers as the client gets them: no `fly-replay*`, no hop-by-hop ones (but a 101's), Fly's own added. */
  private clientHeaders(headers: IncomingHttpHeaders, requestId: string, upgrade: boolean): OutgoingHttpHeaders {
    const out: OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(headers)) {
      if (value === undefined || name.startsWith('fly-replay')) continue;
      if (HOP_BY_HOP.includes(name) && !(upgrade && (name === 'connection' || name === 'upgrade'))) continue;
      out[name] = value;
    }
    out.via = [headers.via, '1.1 fly.io'].filter(Boolean).join(', ');
    out['fly-request-id'] = requestId;
    return out;
  }
}

/** Reads a body up to `limit` bytes; past that it stops, leaving the rest in `req` to be piped. */
function bufferBody(req: IncomingMessage, limit: number): Promise<BufferedBody> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (complete: boolean) => {
      req.off('data', onData).off('end', onEnd).off('error', reject);
      resolve({ chunks, complete });
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (size > limit) {
        req.pause();
        done(false);
      }
    };
    const onEnd = () => done(true);
    req.on('data', onData).once('end', onEnd).once('error', reject);
  });
}

/** The fields of a `fly-replay` header (`instance=abc;state="x"`); null when it cannot be read. */
function parseReplay(header: string): Record<string, string> | null {
  const fields: Record<string, string> = {};
  for (const part of header.split(';').map((p) => p.trim())) {
    if (!part) continue;
    const match = /^([a-z_]+)=(?:"([^"]*)"|([^"]*))$/.exec(part);
    if (!match || !REPLAY_FIELDS.has(match[1])) return null;
    fields[match[1]] = match[2] ?? match[3];
  }
  return Object.keys(fields).length > 0 ? fields : null;
}

function asProxyError(error: unknown): ProxyError {
  return error instanceof ProxyError ? error : new ProxyError(502, 'PU02', `could not complete HTTP request to instance: ${(error as Error).message}`);
}

function answerFailed(target: Target, error: Error): ProxyError {
  return new ProxyError(502, 'PU02', `could not complete HTTP request to instance ${target.machine.id}: ${error.message}`);
}

/** A response's status line and headers, for a socket that left node's HTTP server (an upgrade). */
function rawHead(status: number, message: string | undefined, headers: OutgoingHttpHeaders): string {
  const lines = [`HTTP/1.1 ${status} ${message ?? ''}`.trimEnd()];
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    for (const one of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${one}`);
  }
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/** Fly's request id: a ULID-like id and the edge's region. */
function flyRequestId(region: string): string {
  const alphabet = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
  return `${Array.from(randomBytes(26), (b) => alphabet[b % 32]).join('')}-${region}`;
}

function microsecondsNow(): string {
  return String(BigInt(Date.now()) * 1000n);
}

/** `::ffff:127.0.0.1` (an IPv4 client on a dual socket) as `127.0.0.1`. */
function plainIp(address: string): string {
  return address.replace(/^::ffff:/, '');
}
