import { Agent, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { createProxyMiddleware } from 'http-proxy-middleware';
import { sessionIdOfPath, type Logger } from '@velocity/shared';
import type { SessionRoutes } from './session-routes';

type EdgeRequest = IncomingMessage & { edgeTarget?: string };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The local edge: `/p/<sessionId>/...` goes to that session's machine, HTTP and
 * websockets (Vite's HMR) alike. On Fly.io, Fly's proxy plays this part.
 */
export function createEdge(routes: SessionRoutes, logger: Logger) {
  const proxy = createProxyMiddleware<EdgeRequest, ServerResponse>({
    router: (req) => req.edgeTarget,
    // Reused connections to the machines: without an agent every request opens a new one.
    agent: new Agent({ keepAlive: true, maxSockets: 256 }),
    changeOrigin: false,
    xfwd: true,
    // Upgrades are handed over by `upgrade` below, after the route is known.
    ws: false,
    on: {
      error: (err, req, resOrSocket) => {
        const sessionId = sessionIdOfPath(req.url ?? '');
        // The machine may be gone: the next request looks the session up again.
        if (sessionId) routes.forget(sessionId);
        logger.warn('edge proxy error', { sessionId, err });
        if (resOrSocket instanceof Object && 'writeHead' in resOrSocket && !resOrSocket.headersSent) {
          resOrSocket.writeHead(502, { 'content-type': 'application/json' });
          resOrSocket.end(JSON.stringify({ error: 'Preview machine unreachable', sessionId }));
        } else if ('destroy' in resOrSocket) {
          resOrSocket.destroy();
        }
      },
    },
  });

  /** Express-style middleware; passes anything that is not a preview path on to `next`. */
  async function middleware(req: EdgeRequest, res: ServerResponse, next: (err?: unknown) => void) {
    const sessionId = sessionIdOfPath(req.url ?? '');
    if (sessionId === null) return next();
    try {
      const refusal = await route(req, sessionId);
      if (refusal) return sendJson(res, refusal.status, refusal.body);
      await proxy(req, res, next);
    } catch (err) {
      next(err);
    }
  }

  async function upgrade(req: EdgeRequest, socket: Socket, head: Buffer) {
    const sessionId = sessionIdOfPath(req.url ?? '');
    if (sessionId === null) return socket.destroy();
    try {
      const refusal = await route(req, sessionId);
      if (refusal) {
        socket.end(`HTTP/1.1 ${refusal.status} ${refusal.status === 410 ? 'Gone' : 'Not Found'}\r\nconnection: close\r\n\r\n`);
        return;
      }
      proxy.upgrade(req, socket, head);
    } catch (err) {
      logger.warn('edge upgrade failed', { sessionId, err: err as Error });
      socket.destroy();
    }
  }

  /** Sets the request's target, or says why there is none. */
  async function route(req: EdgeRequest, sessionId: string) {
    if (!UUID.test(sessionId)) return { status: 404, body: { error: 'Session not found', sessionId } };
    const found = await routes.resolve(sessionId);
    if (found.kind === 'unknown') return { status: 404, body: { error: 'Session not found', sessionId } };
    if (found.kind === 'gone') return { status: 410, body: { error: 'Session ended', sessionId } };
    req.edgeTarget = found.target;
    return null;
  }

  return { middleware, upgrade };
}

function sendJson(res: ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify(body));
}
