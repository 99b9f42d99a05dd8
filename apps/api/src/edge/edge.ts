import { Agent, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { createProxyMiddleware, debugProxyErrorsPlugin, proxyEventsPlugin } from 'http-proxy-middleware';
import { MACHINE_KEEP_ALIVE, sendJson, unixSocketOf, type Logger } from '@velocity/runtime';
import { legacyPreviewPath, routeOfHost } from '@velocity/contracts';
import type { SessionRoutes } from './session-routes';

type EdgeRequest = IncomingMessage & { edgeTarget?: string; routeId?: string };

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
}

/** The answer to a preview request on an api that does not serve previews: its DNS points here by mistake. */
const MISDIRECTED = { status: 421, body: { error: "Previews are served by the preview app's own proxy, not by the api: point the preview domain's DNS there", field: 'host' } };

/**
 * The local edge: a request whose Host is `<routeId>.<preview domain>` goes to
 * that route's machine, HTTP and websockets (Vite's HMR) alike, whatever its
 * path; nothing of the api is ever served on a preview's origin. Old links,
 * `/p/<routeId>/...` on the api's origin, are redirected to the preview's
 * origin. On Fly.io, Fly's proxy plays this part.
 */
export function createEdge(routes: SessionRoutes, logger: Logger, options: EdgeOptions) {
  const proxy = createProxyMiddleware<EdgeRequest, ServerResponse>({
    router: (req) => proxyTargetOf(req.edgeTarget),
    // Not the default logger plugin: it throws (and the process dies) on a target it cannot make a URL of, such as
    // an IPv6 literal from the router; without a logger it logs nothing anyway. The errors are this edge's own (below).
    ejectPlugins: true,
    plugins: [debugProxyErrorsPlugin, proxyEventsPlugin],
    // Reused connections to the machines (per socket path, too): without an agent every request opens a new one.
    agent: new Agent({ keepAlive: true, maxSockets: 256, timeout: MACHINE_KEEP_ALIVE.clientIdleMs }),
    changeOrigin: false,
    xfwd: true,
    // Upgrades are handed over by `upgrade` below, after the route is known.
    ws: false,
    on: {
      error: (err, req, resOrSocket) => {
        const routeId = req.routeId;
        // The machine may be gone: the next request looks the session up again.
        if (routeId) routes.forget(routeId);
        logger.warn('edge proxy error', { routeId, err });
        if ('writeHead' in resOrSocket && !resOrSocket.headersSent) {
          sendJson(resOrSocket, 502, { error: 'Preview machine unreachable', routeId });
        } else if ('destroy' in resOrSocket) {
          resOrSocket.destroy();
        }
      },
    },
  });

  /** Express-style middleware; passes requests for the api's own origin on to `next`. */
  async function middleware(req: EdgeRequest, res: ServerResponse, next: (err?: unknown) => void) {
    const host = routeOfHost(req.headers.host, options.previewDomain);
    if (host.kind === 'other') return redirectLegacyLink(req, res) || next();
    try {
      const refusal = await route(req, host);
      if (refusal) {
        if (refusal.retryAfter) res.setHeader('retry-after', refusal.retryAfter);
        return sendJson(res, refusal.status, refusal.body);
      }
      await proxy(req, res, next);
    } catch (err) {
      next(err);
    }
  }

  /** `/p/<routeId>/rest` on the api's origin: 308 to `<preview origin>/rest`. True when answered. */
  function redirectLegacyLink(req: IncomingMessage, res: ServerResponse): boolean {
    const legacy = legacyPreviewPath(req.url ?? '/');
    if (!legacy || !/^[0-9a-f-]{36}$/i.test(legacy.routeId)) return false;
    res.writeHead(308, { location: `${options.previewOriginOf(legacy.routeId)}${legacy.rest}`, 'content-length': 0 });
    res.end();
    return true;
  }

  async function upgrade(req: EdgeRequest, socket: Socket, head: Buffer) {
    socket.on('error', () => undefined);
    const host = routeOfHost(req.headers.host, options.previewDomain);
    if (host.kind === 'other') return socket.destroy();
    try {
      const refusal = await route(req, host);
      if (refusal) {
        const retryAfter = refusal.retryAfter ? `retry-after: ${refusal.retryAfter}\r\n` : '';
        socket.end(`HTTP/1.1 ${refusal.status} ${STATUS_TEXT[refusal.status] ?? 'Not Found'}\r\n${retryAfter}connection: close\r\ncontent-length: 0\r\n\r\n`);
        return;
      }
      proxy.upgrade(req, socket, head);
    } catch (err) {
      logger.warn('edge upgrade failed', { routeId: req.routeId, err: err as Error });
      socket.destroy();
    }
  }

  /** Sets the request's target, or says why there is none. */
  async function route(req: EdgeRequest, host: Exclude<ReturnType<typeof routeOfHost>, { kind: 'other' }>): Promise<Refusal | null> {
    if (!options.servesPreviews) return MISDIRECTED;
    if (host.kind === 'foreign') return { status: 404, body: { error: 'Session not found' } };
    req.routeId = host.routeId;
    const found = await routes.resolve(host.routeId, req.socket.remoteAddress);
    if (found.kind === 'unknown') return { status: 404, body: { error: 'Session not found', routeId: host.routeId } };
    if (found.kind === 'gone') return { status: 410, body: { error: 'Session ended', routeId: host.routeId } };
    if (found.kind === 'limited') return tooManyMisses(found.retryAfterSeconds);
    req.edgeTarget = found.target;
    return null;
  }

  return { middleware, upgrade };
}

const STATUS_TEXT: Record<number, string> = { 404: 'Not Found', 410: 'Gone', 421: 'Misdirected Request', 429: 'Too Many Requests' };

interface Refusal {
  status: number;
  body: Record<string, unknown>;
  retryAfter?: string;
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
