import { SETTLED_EVENTS, TERMINAL_EVENTS, sessionEventSchema, type SessionEvent } from '@velocity/contracts';
import { EventStream, IdleConnection, StreamClosed } from '@velocity/runtime';
import { ApiError, apiErrorFrom, causeOf, type Api } from './api';

/**
 * The api sends a heartbeat comment at least every 15 s: a connection silent
 * for this long is dead (a NAT or proxy dropped it without closing) and is
 * resumed like a closed one.
 */
const IDLE_MS = 45_000;

/** Consecutive failed attempts (no event between them) after which following gives up. */
const MAX_FAILURES = 20;

/**
 * Follows a session's events (SSE) until `until` says so (by default when the
 * session is settled: `ready`, `failed`, `ended`) or the session is over
 * (`failed`, `ended`: the api closes the stream after them), then closes the
 * stream, sending the token when there is one. A broken or silent connection is
 * resumed with Last-Event-ID, as an EventSource does, so nothing is missed or
 * repeated; an answer of 4xx ends it at once (an ApiError). Returns the event
 * it stopped at.
 */
export async function followEvents(options: {
  api: Api;
  sessionId: string;
  /** Overall limit; none when undefined (follow for as long as the session lives). */
  timeoutMs?: number;
  until?: (event: SessionEvent) => boolean;
  onEvent: (event: SessionEvent) => void;
}): Promise<SessionEvent> {
  const { api, sessionId, onEvent } = options;
  const until = options.until ?? ((event: SessionEvent) => SETTLED_EVENTS.includes(event.type));
  const deadline = options.timeoutMs === undefined ? undefined : AbortSignal.timeout(options.timeoutMs);
  const url = `${api.base}/v1/sessions/${sessionId}/events`;
  let lastProblem = '';
  const problemOf = (error: unknown) =>
    error instanceof StreamClosed ? 'the stream closed before the session was over' : error instanceof IdleConnection ? error.message : `GET ${url}: ${causeOf(error)}`;
  const stream = new EventStream({
    url,
    headers: api.headers,
    signal: deadline,
    idleTimeoutMs: IDLE_MS,
    reconnect: { initialDelayMs: 200, maxDelayMs: 2000, jitter: false },
    maxFailures: MAX_FAILURES,
    refused: ({ status, statusText, body }) => (status >= 400 && status < 500 ? apiErrorFrom(status, body, statusText) : undefined),
    onReconnect: ({ error }) => (lastProblem = problemOf(error)),
  });
  let last: SessionEvent | undefined;
  try {
    await stream.follow((frame) => {
      const event = sessionEventSchema.parse(JSON.parse(frame.data));
      onEvent(event);
      last = event;
      return until(event) || TERMINAL_EVENTS.includes(event.type);
    });
    return last!;
  } catch (err) {
    if (err instanceof ApiError) throw err;
    if (deadline?.aborted) {
      throw new Error(`timed out after ${Math.round((options.timeoutMs ?? 0) / 1000)} s following the events of session ${sessionId}${lastProblem ? ` (${lastProblem})` : ''}`);
    }
    throw new Error(`lost the events of session ${sessionId} after ${MAX_FAILURES} attempts: ${problemOf(err)}`);
  }
}
