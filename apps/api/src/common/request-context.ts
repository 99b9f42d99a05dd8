import { AsyncLocalStorage } from 'node:async_hooks';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { REQUEST_ID_HEADER, requestIdFrom, routeIdOfHost } from '@velocity/contracts';
import { type Logger } from '@velocity/runtime';

/**
 * Every api request runs inside a request context: its id (the client's
 * `x-request-id` when it is a safe token, else a new one), echoed on the response
 * and added to every log line written while the request is handled (see
 * `requestLogFields`, the api logger's context). On finish one request line is
 * logged: method, path, status, ms, and the session (or route) id when the path has one.
 */
export interface RequestContext {
  requestId: string;
}

const storage = new AsyncLocalStorage<RequestContext>();

/** The current request's id, when there is a request (the provisioning job carries it). */
export function currentRequestId(): string | undefined {
  return storage.getStore()?.requestId;
}

/** Fields the api logger adds to each line: the request id inside a request. */
export function requestLogFields(): Record<string, unknown> | undefined {
  const context = storage.getStore();
  return context ? { requestId: context.requestId } : undefined;
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

/** Requests logged at debug, not info: probes and scrapes every few seconds. */
const QUIET = /^\/(health|ready|metrics)(\/|$)/;

/** The metrics route label of every request to a preview's origin. */
export const PREVIEW_ROUTE = 'preview';

export interface RequestObserver {
  (fields: { method: string; path: string; status: number; seconds: number; route?: string }): void;
}

/** The middleware; first in the chain, so the edge's and Nest's work both run inside the context. */
export function requestContext(logger: Logger, observe?: RequestObserver) {
  return function requestContextMiddleware(req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) {
    const requestId = requestIdFrom(req.headers[REQUEST_ID_HEADER]);
    // The edge forwards it to the machine, too.
    req.headers[REQUEST_ID_HEADER] = requestId;
    res.setHeader(REQUEST_ID_HEADER, requestId);
    const started = process.hrtime.bigint();
    const path = (req.url ?? '/').split('?', 1)[0];
    const ids = idsOfRequest(path, req.headers.host);
    let logged = false;
    const done = (aborted: boolean) => {
      if (logged) return;
      logged = true;
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const line = {
        requestId,
        method: req.method,
        path,
        status: res.statusCode,
        ms: Math.round(seconds * 1000),
        ...ids,
        ...(aborted ? { aborted: true } : {}),
      };
      // Each asset a preview loads is a request: those at debug too.
      (ids.routeId || QUIET.test(path) ? logger.debug : logger.info)('request', line);
      const route = ids.routeId ? PREVIEW_ROUTE : (req as { route?: { path?: string } }).route?.path;
      observe?.({ method: req.method ?? 'GET', path, status: res.statusCode, seconds, route });
    };
    res.once('finish', () => done(false));
    res.once('close', () => done(!res.writableFinished));
    storage.run({ requestId }, () => next());
  };
}
