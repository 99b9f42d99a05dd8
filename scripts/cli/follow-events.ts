import { SETTLED_EVENTS, TERMINAL_EVENTS, sessionEventSchema, type SessionEvent } from '@velocity/contracts';
import { readSse } from '@velocity/runtime';
import { ApiError, apiErrorOf, causeOf, type Api } from './api';

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
  const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
  const url = `${api.base}/v1/sessions/${sessionId}/events`;
  let lastId: string | undefined;
  let failures = 0;
  let lastProblem = '';
  while (Date.now() < deadline) {
    const connection = new AbortController();
    const signals = [connection.signal, ...(deadline === Infinity ? [] : [AbortSignal.timeout(Math.max(1, deadline - Date.now()))])];
    try {
      const res = await fetch(url, {
        headers: { ...api.headers, accept: 'text/event-stream', ...(lastId ? { 'last-event-id': lastId } : {}) },
        signal: AbortSignal.any(signals),
      });
      if (res.status >= 400 && res.status < 500) throw await apiErrorOf(res);
      if (res.status !== 200 || !res.body) throw new Error(`GET ${url} answered ${res.status}`);
      for await (const frame of readSse(watched(res.body as unknown as AsyncIterable<Uint8Array>, IDLE_MS, connection))) {
        const event = sessionEventSchema.parse(JSON.parse(frame.data));
        lastId = frame.id ?? lastId;
        failures = 0;
        onEvent(event);
        if (until(event) || TERMINAL_EVENTS.includes(event.type)) return event;
      }
      lastProblem = 'the stream closed before the session was over';
    } catch (err) {
      if (err instanceof ApiError) throw err;
      lastProblem = connection.signal.aborted ? String(connection.signal.reason?.message ?? connection.signal.reason) : `GET ${url}: ${causeOf(err)}`;
    } finally {
      connection.abort(new Error('done'));
    }
    if (++failures > MAX_FAILURES) break;
    await new Promise((resolve) => setTimeout(resolve, Math.min(2000, 100 * 2 ** failures)));
  }
  throw new Error(
    Date.now() >= deadline
      ? `timed out after ${Math.round((options.timeoutMs ?? 0) / 1000)} s following the events of session ${sessionId}${lastProblem ? ` (${lastProblem})` : ''}`
      : `lost the events of session ${sessionId} after ${MAX_FAILURES} attempts: ${lastProblem}`,
  );
}

/** The body's chunks; aborts `connection` when none came for `idleMs`. */
async function* watched(body: AsyncIterable<Uint8Array>, idleMs: number, connection: AbortController): AsyncGenerator<Uint8Array> {
  const timer = setTimeout(() => connection.abort(new Error(`no data (not even a heartbeat) for ${idleMs / 1000} s`)), idleMs);
  timer.unref();
  try {
    for await (const chunk of body) {
      timer.refresh();
      yield chunk;
    }
  } finally {
    clearTimeout(timer);
  }
}
