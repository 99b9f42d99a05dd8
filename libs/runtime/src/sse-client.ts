import type { IncomingMessage } from 'node:http';
import { sleep } from '@velocity/contracts';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { openHttp, readText } from './http-client';
import { backoffDelay, type Backoff } from './retry';

/** One Server-Sent Events frame: a frame without `data` is none. */
export type SseFrame = EventSourceMessage;

/**
 * Reads Server-Sent Events from a response body (fetch's, or node's own
 * response), frame by frame, as the spec parses them (eventsource-parser):
 * lines end in CRLF, CR or LF, and may be split anywhere between chunks;
 * comments (heartbeats) are skipped; a `retry:` field goes to `onRetry`.
 */
export async function* readSse(
  body: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>,
  options: { onRetry?: (ms: number) => void } = {},
): AsyncGenerator<SseFrame> {
  const frames: SseFrame[] = [];
  const parser = createParser({ onEvent: (frame) => frames.push(frame), onRetry: options.onRetry });
  const decoder = new TextDecoder();
  for await (const chunk of body as AsyncIterable<Uint8Array>) {
    parser.feed(decoder.decode(chunk, { stream: true }));
    while (frames.length > 0) yield frames.shift()!;
  }
}

/** An answer other than 200 to an event stream's request. */
export interface SseRefusal {
  status: number;
  statusText: string;
  body: string;
}

export interface EventStreamOptions {
  /** The URL of each connection (`connection`: 0 for the first); a function may move between servers, as a load balancer would. */
  url: string | ((connection: number) => string);
  headers?: Record<string, string>;
  /** Sent as Last-Event-ID by the first connection: the frames up to it were seen. */
  lastEventId?: string;
  /** Ends following (follow rejects with its reason), the open connection too. */
  signal?: AbortSignal;
  /** A connection that brings no byte (frame or heartbeat comment) for this long is dead: it is closed and another opened. */
  idleTimeoutMs?: number;
  /**
   * The pause before each reconnection, doubling over failed connections in a row; one that brought a frame starts it over.
   * The server's `retry:` is a browser's EventSource's pause; the system's own clients keep to this one.
   */
  reconnect?: Backoff;
  /** Connections in a row that bring no frame after which following gives up, with the last one's error. */
  maxFailures?: number;
  /** An answer other than 200: the error that ends following, or undefined to reconnect. By default every one is reconnected. */
  refused?: (answer: SseRefusal) => Error | undefined;
  /** The stream is open (a 200 came). */
  onOpen?: () => void;
  /** A connection ended without being asked to (`error`: why; a StreamClosed when the server closed it): the next one opens after `delayMs`. */
  onReconnect?: (reconnect: { error: unknown; delayMs: number; failures: number }) => void;
}

/** A frame handler: true stops following (the stream is closed); one that throws breaks the connection, which is then resumed. */
export type SseFrameHandler = (frame: SseFrame) => boolean | void | Promise<boolean | void>;

/**
 * Follows a Server-Sent Events stream as a browser's EventSource does: on a
 * broken, closed or silent connection it opens another with Last-Event-ID (the
 * id of the last frame handled), so no frame is missed or handled twice.
 * Frames are handled one at a time, in order; a frame's id counts as seen once
 * its handler has returned. Every request goes through openHttp (node's HTTP
 * client, Unix sockets included).
 */
export class EventStream {
  /** Where the next connection resumes; a handler may clear it to start over (the server then sends everything again). */
  lastEventId: string | undefined;
  /** How many times a connection ended and another was opened. */
  reconnects = 0;

  constructor(private readonly options: EventStreamOptions) {
    this.lastEventId = options.lastEventId;
  }

  /** Resolves when a handler says stop; rejects with a refusal's error, the signal's reason, or the last error after maxFailures. */
  async follow(onFrame: SseFrameHandler): Promise<void> {
    const { signal, reconnect = { initialDelayMs: 250, maxDelayMs: 10_000 }, maxFailures = Infinity } = this.options;
    let failures = 0;
    for (let connection = 0; ; connection++) {
      signal?.throwIfAborted();
      let error: unknown;
      let received = false;
      try {
        await this.connectOnce(connection, onFrame, () => (received = true));
        return;
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        if (err instanceof Refused) throw err.error;
        error = err;
      }
      failures = received ? 1 : failures + 1;
      if (failures > maxFailures) throw error;
      const delayMs = backoffDelay(failures, reconnect);
      this.reconnects++;
      this.options.onReconnect?.({ error, delayMs, failures });
      await sleep(delayMs, signal);
    }
  }

  /** One connection, until a handler stops; throws when it breaks or the server closes it (StreamClosed). */
  private async connectOnce(connection: number, onFrame: SseFrameHandler, onReceived: () => void): Promise<void> {
    const { url, headers, signal, idleTimeoutMs } = this.options;
    const target = typeof url === 'string' ? url : url(connection);
    const closer = new AbortController();
    let idle: NodeJS.Timeout | undefined;
    const arm = () => {
      if (idleTimeoutMs === undefined) return;
      clearTimeout(idle);
      idle = setTimeout(() => closer.abort(new IdleConnection(idleTimeoutMs)), idleTimeoutMs);
      idle.unref();
    };
    arm();
    try {
      const res = await openHttp(target, {
        headers: { ...headers, accept: 'text/event-stream', ...(this.lastEventId ? { 'last-event-id': this.lastEventId } : {}) },
        signal: signal ? AbortSignal.any([signal, closer.signal]) : closer.signal,
      });
      if (res.statusCode !== 200) throw await refusalOf(target, res, this.options.refused);
      this.options.onOpen?.();
      for await (const frame of readSse(watched(res, arm))) {
        onReceived();
        const stop = await onFrame(frame);
        if (frame.id !== undefined) this.lastEventId = frame.id;
        if (stop === true) return;
      }
      throw new StreamClosed();
    } catch (error) {
      // A silent connection closed by the idle timer: its reason says so, better than the socket's "aborted".
      throw closer.signal.aborted && !(error instanceof Refused) ? closer.signal.reason : error;
    } finally {
      clearTimeout(idle);
      closer.abort(new Error('connection done'));
    }
  }
}

/** The error of an answer other than 200: the caller's (Refused, which ends following), else one naming the URL (reconnected). */
async function refusalOf(url: string, res: IncomingMessage, refused: EventStreamOptions['refused']): Promise<Error> {
  const body = await readText(res).catch(() => '');
  const status = res.statusCode ?? 0;
  const error = refused?.({ status, statusText: res.statusMessage ?? '', body });
  if (error) return new Refused(error);
  res.destroy();
  return new Error(`GET ${url} answered ${status}${body ? `: ${body.slice(0, 200)}` : ''}`);
}

/** The server ended the stream (as the api does when it shuts down): a reconnection resumes it. */
export class StreamClosed extends Error {
  constructor() {
    super('the stream closed');
    this.name = 'StreamClosed';
  }
}

/** A connection that brought no byte for the idle timeout: dropped (a NAT or proxy may have lost it without closing it). */
export class IdleConnection extends Error {
  constructor(readonly idleMs: number) {
    super(`no data (not even a heartbeat) for ${idleMs / 1000} s`);
    this.name = 'IdleConnection';
  }
}

/** Carries a refusal's error out of a connection, past the reconnecting. */
class Refused extends Error {
  constructor(readonly error: Error) {
    super(error.message);
  }
}

/** The body's chunks, re-arming the idle timer on each one (heartbeat comments too). */
async function* watched(body: AsyncIterable<Uint8Array>, arm: () => void): AsyncGenerator<Uint8Array> {
  for await (const chunk of body) {
    arm();
    yield chunk;
  }
}
