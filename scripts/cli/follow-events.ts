import { SETTLED_EVENTS, readSse, sessionEventSchema, type SessionEvent } from '@velocity/shared';

/** An answer of 400 and up: the api's message, and its status. */
export class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/**
 * Follows a session's events (SSE) until it is settled (`ready`, `failed`,
 * `ended`), then closes the stream (the api keeps it open while the session
 * lives), sending the token when there is one. A broken connection is resumed with Last-Event-ID, as an
 * EventSource does, so nothing is missed; an answer of 4xx ends it at once.
 */
export async function followEvents(options: {
  baseUrl: string;
  sessionId: string;
  headers: Record<string, string>;
  timeoutMs: number;
  onEvent: (event: SessionEvent) => void;
}): Promise<SessionEvent> {
  const deadline = Date.now() + options.timeoutMs;
  const url = `${options.baseUrl}/v1/sessions/${options.sessionId}/events`;
  let lastId: string | undefined;
  let failures = 0;
  let lastProblem = '';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url, {
        headers: { ...options.headers, accept: 'text/event-stream', ...(lastId ? { 'last-event-id': lastId } : {}) },
        signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())),
      });
      if (res.status >= 400 && res.status < 500) throw new HttpError(res.status, `GET ${url} answered ${res.status}: ${await messageOf(res)}`);
      if (res.status !== 200 || !res.body) throw new Error(`GET ${url} answered ${res.status}`);
      for await (const frame of readSse(res.body)) {
        const event = sessionEventSchema.parse(JSON.parse(frame.data));
        lastId = frame.id ?? lastId;
        failures = 0;
        options.onEvent(event);
        if (SETTLED_EVENTS.includes(event.type)) return event;
      }
      lastProblem = 'the stream closed before a terminal event';
    } catch (err) {
      if (err instanceof HttpError) throw err;
      lastProblem = (err as Error).message;
    }
    if (++failures > 20) break;
    await new Promise((resolve) => setTimeout(resolve, Math.min(2000, 100 * 2 ** failures)));
  }
  throw new Error(`no ready or failed event for session ${options.sessionId}: ${lastProblem || 'timed out'}`);
}

/** The api's error message (`{ message }`), else the body's text. */
export async function messageOf(res: Response): Promise<string> {
  const text = await res.text().catch(() => '');
  try {
    const body = JSON.parse(text);
    return typeof body.message === 'string' ? body.message : text;
  } catch {
    return text || res.statusText;
  }
}
