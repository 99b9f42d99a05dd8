import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger as Pino } from 'pino';
import { pinoHttp, type HttpLogger } from 'pino-http';
import { idsOfRequest, pathOf } from './request-context';

/** Requests logged at debug, not info: probes and scrapes every few seconds. */
const QUIET = /^\/(health|ready|metrics)(\/|$)/;

/**
 * pino-http's one line a request, `request`, when it finishes (or its client
 * leaves: `aborted`): requestId, method, path, status, ms, and the session (or
 * route) id its path names. Neither headers (so no Authorization header) nor
 * the query string nor bodies are logged: the line carries only these fields.
 * Probes and scrapes come every few seconds, and a request naming a preview
 * (its Host's first label a route id) is one of hundreds a page loads: those at
 * debug. Mounted after `requestContext`, whose id (`req.id`) it reuses. The
 * previews the local edge serves never get here (it sits ahead of Express);
 * they are counted in the metrics, and the edge logs their failures.
 */
export function requestLogging(logger: Pino): (req: IncomingMessage, res: ServerResponse, next: () => void) => void {
  const logged = pinoHttpFor(logger);
  // A preview's assets are most requests: when their debug line would be dropped anyway, pino-http is not run for them.
  return function requestLoggingMiddleware(req, res, next) {
    const quiet = isQuiet(req);
    if (quiet && !logger.isLevelEnabled('debug')) return next();
    quietRequests.set(req, quiet);
    logged(req, res, next);
  };
}

function pinoHttpFor(logger: Pino): HttpLogger {
  return pinoHttp({
    logger,
    // pino-http's default id is `req.id`, which requestContext has set.
    customAttributeKeys: { reqId: 'requestId' },
    // req.log and the request line bind the request id only, not the whole request.
    quietReqLogger: true,
    quietResLogger: true,
    customLogLevel: (req) => (quietRequests.get(req) ? 'debug' : 'info'),
    customSuccessMessage: () => 'request',
    customErrorMessage: () => 'request',
    customSuccessObject: (req, res, { responseTime }) => requestLine(req, res, responseTime),
    // A 5xx is answered and logged by the error filter (with its stack); this line is the request's as any other.
    customErrorObject: (req, res, _err, { responseTime }) => requestLine(req, res, responseTime),
  });
}

/** Express keeps the whole URL in originalUrl while mounted routers shorten `url`. */
function pathOfRequest(req: IncomingMessage): string {
  return pathOf((req as { originalUrl?: string }).originalUrl ?? req.url);
}

/** Whether each logged request's line is at debug, worked out once when it arrives. */
const quietRequests = new WeakMap<IncomingMessage, boolean>();

function isQuiet(req: IncomingMessage): boolean {
  return Boolean(idsOfRequest(pathOfRequest(req), req.headers.host).routeId) || QUIET.test(pathOfRequest(req));
}

function requestLine(req: IncomingMessage, res: ServerResponse, ms: number) {
  const path = pathOfRequest(req);
  return {
    method: req.method,
    path,
    status: res.statusCode,
    ms,
    ...idsOfRequest(path, req.headers.host),
    ...(res.writableFinished ? {} : { aborted: true }),
  };
}
