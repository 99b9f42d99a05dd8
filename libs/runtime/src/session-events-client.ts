import { TimeoutError, SETTLED_EVENTS, sessionEventSchema, type SessionEvent } from '@velocity/contracts';
import { openHttp, readText } from './http-client';
import { EventStream, readSse, type SseFrame } from './sse-client';

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
  const result: FollowResult = { events: [], ids: [], reconnects: 0 };
  const deadline = AbortSignal.timeout(timeoutMs);
  const stream = new EventStream({
    url: (connection) => `${baseUrls[connection % baseUrls.length]}/v1/sessions/${sessionId}/events`,
    lastEventId: afterId,
    signal: deadline,
    reconnect: { initialDelayMs: 100, maxDelayMs: 1000 },
    refused: ({ status, body }) => (status === 404 || status === 400 ? new Error(`events of session ${sessionId} answered ${status}: ${body}`) : undefined),
  });
  try {
    await stream.follow((frame) => collectEvent(frame, result, onEvent));
  } catch (err) {
    if (!deadline.aborted) throw err;
    throw new TimeoutError(`ready, failed or ended of session ${sessionId} (got: ${result.events.map((e) => e.type).join(', ') || 'nothing'})`, timeoutMs);
  } finally {
    result.reconnects = stream.reconnects;
  }
  return result;
}

/** Adds a frame's event to `result`; true when it settles the session (the caller closes the stream). */
function collectEvent(frame: SseFrame, result: FollowResult, onEvent?: FollowOptions['onEvent']): boolean {
  const event = sessionEventSchema.parse(JSON.parse(frame.data));
  result.events.push(event);
  result.ids.push(frame.id ?? '');
  onEvent?.(event, frame.id ?? '');
  return SETTLED_EVENTS.includes(event.type);
}

/** Adds each frame's event to `result` until one that settles the session (true: the caller closes the stream) or the end of the stream (false). */
async function collectEvents(frames: AsyncIterable<SseFrame>, result: FollowResult, onEvent?: FollowOptions['onEvent']): Promise<boolean> {
  for await (const frame of frames) if (collectEvent(frame, result, onEvent)) return true;
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
