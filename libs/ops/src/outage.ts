/** A backing service the api cannot do without. */
export type Dependency = 'redis' | 'database';

export interface Outage {
  dependency: Dependency;
  /** What the driver said, for the log and the answer. */
  detail: string;
}

// ioredis: disconnected with no offline queue; dropped in flight with no retries; no answer within commandTimeout.
const REDIS_MESSAGES = [/enableOfflineQueue options is false/, /max retries per request limit/i, /^Command timed out$/, /^Connection is closed\.?$/];
// pg and pg-pool: no connection in time, no answer in time, the connection lost.
const DATABASE_MESSAGES = [
  /timeout exceeded when trying to connect/i,
  /^Query read timeout$/,
  /^Connection terminated/,
  /the database system is (starting up|shutting down)/i,
  // The Supabase adapter: postgrest-js turns a failed fetch into `<name>: <message>` (its bounded fetch timed out, or was refused).
  /(TimeoutError|AbortError): The operation was aborted/,
  /TypeError: fetch failed/,
];
// Node's own socket errors (pg's connect; ioredis never hands these to a command).
const SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);
// Postgres SQLSTATE: class 08 (connection exception), 57P01-57P03 (shut down, cannot connect now), 53300 (too many connections).
const DATABASE_STATES = /^(08...|57P0[123]|53300)$/;
// PostgREST: PGRST000-PGRST003 say the database is unreachable or its pool is exhausted.
const POSTGREST_CODES = /^PGRST00[0-3]$/;

/**
 * Whether `err` says Redis or the database did not answer (down, unreachable,
 * too slow), rather than that the request was wrong: such a request is answered
 * 503 with Retry-After. Drivers tell it only in their messages and codes, so
 * this reads them; the spec beside it checks each against the real driver.
 */
export function outageOf(err: unknown): Outage | null {
  // Not `instanceof Error`: errors made by Node's own modules come from another realm under Jest's sandbox.
  for (let e = err, depth = 0; isErrorLike(e) && depth < 4; e = e.cause, depth++) {
    const found = classify(e);
    if (found) return found;
  }
  return null;
}

interface ErrorLike {
  name: string;
  message: string;
  code?: unknown;
  cause?: unknown;
}

function isErrorLike(value: unknown): value is ErrorLike {
  return typeof value === 'object' && value !== null && typeof (value as ErrorLike).message === 'string';
}

function classify(e: ErrorLike): Outage | null {
  const detail = e.message;
  if (e.name === 'MaxRetriesPerRequestError' || REDIS_MESSAGES.some((m) => m.test(detail))) return { dependency: 'redis', detail };
  const code = typeof e.code === 'string' ? e.code : '';
  if (DATABASE_MESSAGES.some((m) => m.test(detail)) || SOCKET_CODES.has(code) || DATABASE_STATES.test(code) || POSTGREST_CODES.test(code)) {
    return { dependency: 'database', detail };
  }
  return null;
}
