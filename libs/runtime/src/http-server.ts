import type { ServerResponse } from 'node:http';

/**
 * A JSON answer from one of the system's plain node servers (the edge, the
 * machines, the workers' ops servers): never cached, no referrer sent on.
 * Headers set on `res` before stay (WWW-Authenticate, Retry-After).
 */
export function sendJson(res: ServerResponse, status: number, body: unknown, options: { headOnly?: boolean } = {}): void {
  const json = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(json));
  res.setHeader('cache-control', 'no-store');
  res.setHeader('referrer-policy', 'no-referrer');
  res.end(options.headOnly ? undefined : json);
}

/**
 * How long idle keep-alive connections between two of the system's own hops
 * live: the client (http.Agent's `timeout`) drops one before the server may
 * close it, so no request is ever sent on a connection the server is closing
 * at that moment (ECONNRESET: a 502 for the browser, seen under load).
 */
export interface KeepAlive {
  serverMs: number;
  clientIdleMs: number;
}

/** The edge's connections to a machine's server. */
export const MACHINE_KEEP_ALIVE: KeepAlive = { serverMs: 65_000, clientIdleMs: 60_000 };
