import { AsyncLocalStorage } from 'node:async_hooks';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { REQUEST_ID_HEADER, requestIdFrom, routeIdOfHost } from '@velocity/contracts';

/**
 * Every request to the api's own origin runs inside a request context: its id (the client's
 * `x-request-id` when it is a safe token, else a new one), echoed on the response,
 * set as `req.id` (pino-http's request line reuses it, see request-logging.ts),
 * and added to every log line written while the request is handled, with the
 * session (or route) id its path names (see `requestLogFields`, the api logger's context).
 */
export interface RequestContext {
  requestId: string;
  sessionId?: string;
  routeId?: string;
}

const storage = new AsyncLocalStorage<RequestContext>();

/** The current request's id, when there is a request (the provisioning job carries it). */
export function currentRequestId(): string | undefined {
  return storage.getStore()?.requestId;
}

/** Fields the api logger adds to each line inside a request: its id, and the session or route it is about. */
export function requestLogFields(): Record<string, unknown> | undefined {
  const context = storage.getStore();
  return context && { ...context };
}

const SESSION_PATH = /^\/v1\/(?:sessions|machines|routes)\/([0-9a-fA-F-]{36})(?:\/|$)/;

/**
 * What a request is about: `routeId` for a preview (its Host is
 * `<routeId>.<preview domain>`: the session's own id, or its pooled machine's);
 * `sessionId` for `/v1/sessions|machines|routes/<id>/...`.
 */
export function idsOfRequest(path: string, host?: string): { sessionId?: string; routeId?: string } {
  const routeId = routeIdOfHost(host);
  if (routeId) return { routeId };
  const sessionId = SESSION_PATH.exec(path)?.[1];
  return sessionId ? { sessionId } : {};
}

/** The metrics route label of every request to a preview's origin. */
export const PREVIEW_ROUTE = 'preview';

/** A request's path without its query string (which is never logged). */
export function pathOf(url: string | undefined): string {
  return (url ?? '/').split('?', 1)[0];
}

export interface RequestObserver {
  (fields: { method: string; path: string; status: number; seconds: number; route?: string }): void;
}

/**
 * Gives a request its id (the client's when it is a safe token, else a new one), in its headers (so a proxied
 * request carries it on to the machine) and on its response. The api's middleware below and the edge's previews.
 */
export function assignRequestId(req: IncomingMessage, res?: ServerResponse): string {
  const requestId = requestIdFrom(req.headers[REQUEST_ID_HEADER]);
  req.headers[REQUEST_ID_HEADER] = requestId;
  req.id = requestId;
  res?.setHeader(REQUEST_ID_HEADER, requestId);
  return requestId;
}

/** The middleware; first in the chain of the api's own origin, so Nest's work runs inside the context. */
export function requestContext(observe?: RequestObserver) {
  return function requestContextMiddleware(req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) {
    const requestId = assignRequestId(req, res);
    const started = process.hrtime.bigint();
    const path = pathOf(req.url);
    const ids = idsOfRequest(path, req.headers.host);
    let observed = false;
    const done = () => {
      if (observed) return;
      observed = true;
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const route = ids.routeId ? PREVIEW_ROUTE : (req as { route?: { path?: string } }).route?.path;
      observe?.({ method: req.method ?? 'GET', path, status: res.statusCode, seconds, route });
    };
    if (observe) {
      res.once('finish', done);
      res.once('close', done);
    }
    storage.run({ requestId, ...ids }, () => next());
  };
}
