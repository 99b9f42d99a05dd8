import { Agent, STATUS_CODES, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { createProxyMiddleware, debugProxyErrorsPlugin, proxyEventsPlugin } from 'http-proxy-middleware';
import { outageOf } from '@velocity/ops';
import { MACHINE_KEEP_ALIVE, sendJson, unixSocketOf, type Logger } from '@velocity/runtime';
import { legacyPreviewPath, routeOfHost, type HostRoute } from '@velocity/contracts';
import { PREVIEW_ROUTE, assignRequestId, pathOf, type RequestObserver } from '../common/request-context';
import { OUTAGE_RETRY_AFTER_SECONDS, unavailable } from '../common/unavailable';
import type { SessionRoutes } from './session-routes';

type EdgeRequest = IncomingMessage & { edgeTarget?: string; routeId?: string };
type PreviewHost = Exclude<HostRoute, { kind: 'other' }>;

export interface EdgeOptions {
  /** `host[:port]` under which each preview has its origin, `<routeId>.<previewDomain>`. */
  previewDomain: string;
  /** The origin of a route id's preview, for redirects of old `/p/<id>/` links. */
  previewOriginOf: (routeId: string) => string;
  /**
   * Whether previews go through this edge. Not on Fly.io: the preview domain
   * points at the preview app, whose proxy and machines (`fly-replay`) route
   * them; a preview request that reaches the api anyway is misdirected (421).
   */
  servesPreviews: boolean;
  /** Told of each preview request once it is done (the api's request metrics, as route `preview`). */
  observe?: RequestObserver;
}

export interface Edge {
  /** The api server's request listener: previews are served here, any other request goes on to `api`. */
  requestListener(api: RequestListener): RequestListener;
  /** The api server's upgrade listener: previews' websockets (Vite's HMR); any other upgrade is refused. */
  upgrade(req: IncomingMessage, socket: Socket, head: Buffer): void;
  /** Express middleware of the api's origin: old links, `/p/<routeId>/rest`, answer 308 to `<preview origin>/rest`. */
  legacyLinks(req: IncomingMessage, res: ServerResponse, next: () => void): void;
}

/** The answer to a preview request on an api that does not serve previews: its DNS points here by mistake. */
const MISDIRECTED: Refusal = { status: 421, body: { error: "Previews are served by the preview app's own proxy, not by the api: point the preview domain's DNS there", field: 'host' } };

/**
 * The local edge: a request whose Host is `<routeId>.<preview domain>` goes to
 * that route's machine, HTTP and websockets (Vite's HMR) alike, whatever its
 * path; nothing of the api is ever served on a preview's origin. It sits on the
 * api's HTTP server itself, ahead of Express and Nest: a preview request costs a
 * Host check, a route from memory and the proxy, none of the api's middleware.
 * Each gets a request id (forwarded to the machine, echoed to the browser) and
 * is counted in the request metrics; it has no request line of its own (a page
 * load is hundreds of module requests), but every failure is logged. Old links,
 * `/p/<routeId>/...` on the api's origin, are redirected to the preview's
 * origin. On Fly.io, Fly's proxy plays this part.
 */
export function createEdge(routes: SessionRoutes, logger: Logger, options: EdgeOptions): Edge {
  const proxy = createProxyMiddleware<EdgeRequest, ServerResponse>({
    router: (req) => proxyTargetOf(req.edgeTarget),
    // Not the default logger plugin: it throws (and the process dies) on a target it cannot make a URL of, such as
    // an IPv6 literal from the router; without a logger it logs nothing anyway. The errors are this edge's own (below).
    ejectPlugins: true,
    plugins: [debugProxyErrorsPlugin, proxyEventsPlugin],
    // Reused connections to the machines, per address and per socket path (the agent's key holds it): without an
    // agent every request would open a connection of its own.
    agent: new Agent({ keepAlive: true, maxSockets: 256, timeout: MACHINE_KEEP_ALIVE.clientIdleMs }),
    changeOrigin: false,
    xfwd: true,
    // Upgrades are handed over by `upgrade` below, after the route is known.
    ws: false,
    on: { error: (err, req, resOrSocket) => machineFailed(err, req, resOrSocket) },
  });

  function requestListener(api: RequestListener): RequestListener {
    return function edgeRequestListener(req, res) {
      const host = routeOfHost(req.headers.host, options.previewDomain);
      if (host.kind === 'other') return api(req, res);
      try {
        servePreview(req, res, host);
      } catch (err) {
        unexpected(req, res, err);
      }
    };
  }

  function servePreview(req: EdgeRequest, res: ServerResponse, host: PreviewHost) {
    assignRequestId(req, res);
    if (options.observe) observeWhenDone(req, res, options.observe);
    const found = find(req, host);
    // A route in memory is proxied at once, without a promise.
    if (!(found instanceof Promise)) return answer(req, res, found);
    found
      .then((route) => answer(req, res, route), (err) => refuse(res, lookupFailed(req, err)))
      .catch((err) => unexpected(req, res, err));
  }

  function answer(req: EdgeRequest, res: ServerResponse, found: Found) {
    if (!('target' in found)) return refuse(res, found);
    req.edgeTarget = found.target;
    void proxy(req, res, (err?: unknown) => machineFailed(err, req, res));
  }

  function upgrade(req: EdgeRequest, socket: Socket, head: Buffer) {
    socket.on('error', () => undefined);
    const host = routeOfHost(req.headers.host, options.previewDomain);
    if (host.kind === 'other') return socket.destroy();
    assignRequestId(req);
    const upgradeTo = (found: Found) => {
      if (!('target' in found)) return refuseUpgrade(socket, found);
      req.edgeTarget = found.target;
      proxy.upgrade(req, socket, head);
    };
    try {
      const found = find(req, host);
      if (!(found instanceof Promise)) return upgradeTo(found);
      found
        .then(upgradeTo, (err) => refuseUpgrade(socket, lookupFailed(req, err)))
        .catch((err) => unexpected(req, socket, err));
    } catch (err) {
      unexpected(req, socket, err);
    }
  }

  /** The machine of a preview's route, or why there is none; without a promise when the route is in memory. */
  function find(req: EdgeRequest, host: PreviewHost): Found | Promise<Found> {
    if (!options.servesPreviews) return MISDIRECTED;
    if (host.kind === 'foreign') return { status: 404, body: { error: 'Session not found' } };
    const routeId = host.routeId;
    req.routeId = routeId;
    const target = routes.cached(routeId);
    if (target) return { target };
    return routes.resolve(routeId, req.socket.remoteAddress).then((found): Found => {
      if (found.kind === 'route') return { target: found.target };
      if (found.kind === 'gone') return { status: 410, body: { error: 'Session ended', routeId } };
      if (found.kind === 'limited') return tooManyMisses(found.retryAfterSeconds);
      return { status: 404, body: { error: 'Session not found', routeId } };
    });
  }

  /** The session store failed the look-up: 503 with Retry-After when it did not answer (as the api's own routes), else 500. */
  function lookupFailed(req: EdgeRequest, err: unknown): Refusal {
    const fields = { requestId: req.id, routeId: req.routeId, err: err as Error };
    const outage = outageOf(err);
    if (!outage) {
      logger.error('edge: route look-up failed', fields);
      return { status: 500, body: { error: 'Internal server error', routeId: req.routeId } };
    }
    logger.warn('edge: route look-up failed, a backing service did not answer', { ...fields, dependency: outage.dependency });
    const message = `The preview's session could not be looked up: ${outage.dependency} did not answer (${outage.detail}); retry in ${OUTAGE_RETRY_AFTER_SECONDS} s`;
    const exception = unavailable(outage.dependency, message, { routeId: req.routeId });
    return { status: 503, body: exception.getResponse() as Record<string, unknown>, retryAfter: String(OUTAGE_RETRY_AFTER_SECONDS) };
  }

  /** A fault of the edge itself: logged, answered 500 (or the connection closed), and the api keeps serving. */
  function unexpected(req: EdgeRequest, resOrSocket: ServerResponse | Socket, err: unknown) {
    logger.error('edge: unexpected error', { requestId: req.id, routeId: req.routeId, err: err as Error });
    if ('writeHead' in resOrSocket && !resOrSocket.headersSent) sendJson(resOrSocket, 500, { error: 'Internal server error' });
    else resOrSocket.destroy();
  }

  /** The machine did not answer (or the proxy failed): 502, and the route is looked up again next time. */
  function machineFailed(err: unknown, req: EdgeRequest, resOrSocket: ServerResponse | Socket) {
    const routeId = req.routeId;
    // The machine may be gone: the next request looks the session up again.
    if (routeId) routes.forget(routeId);
    logger.warn('edge proxy error', { requestId: req.id, routeId, err: err as Error });
    if ('writeHead' in resOrSocket && !resOrSocket.headersSent) {
      sendJson(resOrSocket, 502, { error: 'Preview machine unreachable', routeId });
    } else {
      resOrSocket.destroy();
    }
  }

  function legacyLinks(req: IncomingMessage, res: ServerResponse, next: () => void) {
    const legacy = legacyPreviewPath(req.url ?? '/');
    if (!legacy || !/^[0-9a-f-]{36}$/i.test(legacy.routeId)) return next();
    res.writeHead(308, { location: `${options.previewOriginOf(legacy.routeId)}${legacy.rest}`, 'content-length': 0 });
    res.end();
  }

  return { requestListener, upgrade, legacyLinks };
}

/**
 * Puts the edge in front of an api server: its request listener (the Express app Nest made it with) then sees only
 * requests that are not previews, and the edge takes the server's upgrades.
 */
export function putEdgeInFront(server: Server, edge: Edge): void {
  const listeners = server.listeners('request') as RequestListener[];
  if (listeners.length !== 1) throw new Error(`putEdgeInFront: the server has ${listeners.length} request listeners, expected the api's one`);
  server.removeListener('request', listeners[0]);
  server.on('request', edge.requestListener(listeners[0]));
  server.on('upgrade', edge.upgrade);
}

interface Refusal {
  status: number;
  body: Record<string, unknown>;
  retryAfter?: string;
}

type Found = { target: string } | Refusal;

function refuse(res: ServerResponse, refusal: Refusal) {
  if (refusal.retryAfter) res.setHeader('retry-after', refusal.retryAfter);
  sendJson(res, refusal.status, refusal.body);
}

function refuseUpgrade(socket: Socket, refusal: Refusal) {
  const retryAfter = refusal.retryAfter ? `retry-after: ${refusal.retryAfter}\r\n` : '';
  socket.end(`HTTP/1.1 ${refusal.status} ${STATUS_CODES[refusal.status]}\r\n${retryAfter}connection: close\r\ncontent-length: 0\r\n\r\n`);
}

function observeWhenDone(req: IncomingMessage, res: ServerResponse, observe: RequestObserver) {
  const started = process.hrtime.bigint();
  // A response emits `close` once, whether it finished or its client left.
  res.once('close', () =>
    observe({ method: req.method ?? 'GET', path: pathOf(req.url), status: res.statusCode, seconds: Number(process.hrtime.bigint() - started) / 1e9, route: PREVIEW_ROUTE }),
  );
}

/** A client past its misses this minute: answered without a lookup. */
const tooManyMisses = (retryAfterSeconds: number): Refusal => ({
  status: 429,
  body: {
    error: `Too many requests for unknown previews from this address (more than EDGE_MISSES_PER_MINUTE a minute); retry in ${retryAfterSeconds} s`,
    limit: 'EDGE_MISSES_PER_MINUTE',
    retryAfterSeconds,
  },
  retryAfter: String(retryAfterSeconds),
});

/**
 * What http-proxy connects to for a machine's URL: the socket of a
 * `http://unix:<socket>:` machine (a sandboxed one), else the URL itself.
 */
export function proxyTargetOf(machineUrl: string | undefined) {
  if (!machineUrl) return undefined;
  const unix = unixSocketOf(machineUrl);
  // host and port only because the target's type asks for them: the socket decides where it connects, and the
  // Host header stays the browser's (changeOrigin is off).
  return unix ? { socketPath: unix.socketPath, host: 'localhost', port: 80 } : machineUrl;
}
