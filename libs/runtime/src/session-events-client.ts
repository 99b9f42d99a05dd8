import { TimeoutError, sleep, SETTLED_EVENTS, sessionEventSchema, type SessionEvent } from '@velocity/contracts';
import { openHttp, readText } from './http-client';
import { readSse, type SseFrame } from './sse-client';

export interface FollowOptions {
  /** Api base URLs; on a broken connection the client moves to the next one, as a load balancer would. */
  baseUrls: string[];
  sessionId: string;
  /** Overall limit; a TimeoutError names the session when it runs out. */
  timeoutMs: number;
  onEvent?: (event: SessionEvent, id: string) => void;
  /** Resume after this event id (the events before it were seen already). */
  afterId?: string;
}

export interface FollowResult {
  events: SessionEvent[];
  ids: string[];
  /** How many times the connection broke and was resumed with Last-Event-ID. */
  reconnects: number;
}

/**
 * Follows a session's events until it is settled (`ready`, `failed` or
 * `ended`: SETTLED_EVENTS), then closes the stream (which the api keeps open
 * while the session lives), as a browser's EventSource does: on a broken
 * connection it reconnects (to the next api) with Last-Event-ID and misses nothing.
 */
export async function followSessionEvents({ baseUrls, sessionId, timeoutMs, onEvent, afterId }: FollowOptions): Promise<FollowResult> {
  const deadline = Date.now() + timeoutMs;
  const result: FollowResult = { events: [], ids: [], reconnects: 0 };
  for (let attempt = 0; Date.now() < deadline; attempt++) {
    const base = baseUrls[attempt % baseUrls.length];
    const lastId = lastIdOf(result) ?? afterId;
    try {
      const res = await fetch(`${base}/v1/sessions/${sessionId}/events`, {
        headers: lastId ? { 'last-event-id': lastId } : {},
        signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())),
      });
      if (res.status === 404 || res.status === 400) throw new Error(`events of session ${sessionId} answered ${res.status}: ${await res.text()}`);
      if (res.status !== 200 || !res.body) throw new RetryableStreamError(`status ${res.status}`);
      if (await collectEvents(readSse(res.body), result, onEvent)) return result;
    } catch (err) {
      if (!(err instanceof RetryableStreamError) && (err as Error).message?.startsWith(`events of session`)) throw err;
    }
    result.reconnects++;
    await sleep(Math.min(1000, 100 * 2 ** Math.min(attempt, 4)));
  }
  throw new TimeoutError(`ready, failed or ended of session ${sessionId} (got: ${result.events.map((e) => e.type).join(', ') || 'nothing'})`, timeoutMs);
}

class RetryableStreamError extends Error {}

/** Adds each frame's event to `result` until one that settles the session (true: the caller closes the stream) or the end of the stream (false). */
async function collectEvents(frames: AsyncIterable<SseFrame>, result: FollowResult, onEvent?: FollowOptions['onEvent']): Promise<boolean> {
  for await (const frame of frames) {
    const event = sessionEventSchema.parse(JSON.parse(frame.data));
    result.events.push(event);
    result.ids.push(frame.id ?? '');
    onEvent?.(event, frame.id ?? '');
    if (SETTLED_EVENTS.includes(event.type)) return true;
  }
  return false;
}

/** The id of the last event that had one: where a resumed stream starts. */
function lastIdOf(result: FollowResult): string | undefined {
  return [...result.ids].reverse().find((id) => id !== '');
}

export interface RequestSessionOptions {
  /** Api base URLs: the first is asked; a broken stream is resumed on the next, as followSessionEvents does. */
  baseUrls: string[];
  projectId: string;
  tier?: 'free' | 'pro';
  /** Extra request headers (authorization). */
  headers?: Record<string, string>;
  timeoutMs: number;
  /** When the api has answered 202: the session exists. */
  onAccepted?: (sessionId: string) => void;
  onEvent?: (event: SessionEvent, id: string) => void;
}

/**
 * Asks for a session and follows its events until it is settled, in one request
 * (`POST /v1/sessions` with `Accept: text/event-stream`), then closes the stream. A stream that breaks
 * before that is resumed on the session's events URL with Last-Event-ID.
 */
export async function requestSession(options: RequestSessionOptions): Promise<FollowResult & { sessionId: string }> {
  const { baseUrls, projectId, tier, timeoutMs, onEvent } = options;
  const deadline = Date.now() + timeoutMs;
  const res = await openHttp(`${baseUrls[0]}/v1/sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...options.headers },
    body: JSON.stringify(tier ? { projectId, tier } : { projectId }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const sessionId = res.headers.location?.split('/').pop();
  if (res.statusCode !== 202 || !sessionId) throw new Error(`POST /v1/sessions answered ${res.statusCode}: ${await readText(res)}`);
  options.onAccepted?.(sessionId);
  const result: FollowResult = { events: [], ids: [], reconnects: 0 };
  const ended = await collectEvents(readSse(res), result, onEvent).catch(() => false);
  res.destroy();
  if (ended) return { sessionId, ...result };
  // Broken before the end: resumed on the events URL.
  const rest = await followSessionEvents({ baseUrls, sessionId, timeoutMs: Math.max(1, deadline - Date.now()), onEvent, afterId: lastIdOf(result) });
  return { sessionId, events: [...result.events, ...rest.events], ids: [...result.ids, ...rest.ids], reconnects: rest.reconnects + 1 };
}
