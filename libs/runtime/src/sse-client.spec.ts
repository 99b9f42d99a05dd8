import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EventStream, IdleConnection, StreamClosed, readSse, type SseFrame } from './sse-client';

async function* chunks(...parts: string[]): AsyncGenerator<Uint8Array> {
  for (const part of parts) yield new TextEncoder().encode(part);
}

async function framesOf(body: AsyncIterable<Uint8Array>, onRetry?: (ms: number) => void): Promise<SseFrame[]> {
  const frames: SseFrame[] = [];
  for await (const frame of readSse(body, { onRetry })) frames.push(frame);
  return frames;
}

describe('readSse', () => {
  it('reads frames whose lines end in CRLF, CR or LF', async () => {
    const frames = await framesOf(chunks('id: 1\r\nevent: put\r\ndata: {"a":1}\r\n\r\n', 'id: 2\revent: delete\rdata: x\r\r', 'data: lf\n\n'));
    expect(frames).toEqual([
      { id: '1', event: 'put', data: '{"a":1}' },
      { id: '2', event: 'delete', data: 'x' },
      { id: undefined, event: undefined, data: 'lf' },
    ]);
  });

  it('joins a frame split anywhere between chunks, a CRLF and a multi-byte character included', async () => {
    const bytes = new TextEncoder().encode('id: 7\r\ndata: ü1\r\ndata: 2\r\n\r\n');
    const pieces: Uint8Array[] = [];
    for (let i = 0; i < bytes.length; i += 3) pieces.push(bytes.slice(i, i + 3));
    async function* split() {
      yield* pieces;
    }
    expect(await framesOf(split())).toEqual([{ id: '7', event: undefined, data: 'ü1\n2' }]);
  });

  it('skips comments (heartbeats) and frames without data; hands `retry:` to onRetry', async () => {
    const retries: number[] = [];
    const frames = await framesOf(chunks(': heartbeat\n\n', 'retry: 2000\n\n', 'event: lonely\n\n', 'data: kept\n\n'), (ms) => retries.push(ms));
    expect(frames.map((frame) => frame.data)).toEqual(['kept']);
    expect(retries).toEqual([2000]);
  });
});

describe('EventStream', () => {
  let server: Server;
  let url: string;
  /** The Last-Event-ID of each request, in order (null: none sent). */
  let asked: (string | null)[];
  let answer: (req: IncomingMessage, res: ServerResponse, connection: number) => void;

  beforeEach(async () => {
    asked = [];
    server = createServer((req, res) => {
      asked.push((req.headers['last-event-id'] as string | undefined) ?? null);
      answer(req, res, asked.length - 1);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/events`;
  });
  afterEach(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const stream = (res: ServerResponse) => res.writeHead(200, { 'content-type': 'text/event-stream' });
  const fast = { initialDelayMs: 5, maxDelayMs: 20 };

  it('reconnects a stream the server closed with the id of the last frame handled as Last-Event-ID', async () => {
    answer = (_req, res, connection) => {
      stream(res);
      if (connection === 0) res.end('id: 1\r\ndata: a\r\n\r\nid: 2\r\ndata: b\r\n\r\n');
      else res.write('id: 3\r\ndata: c\r\n\r\n');
    };
    const reconnects: unknown[] = [];
    const events = new EventStream({ url, lastEventId: '0', reconnect: fast, onReconnect: ({ error }) => reconnects.push(error) });
    const seen: string[] = [];
    await events.follow((frame) => {
      seen.push(frame.data);
      return frame.data === 'c';
    });
    expect(seen).toEqual(['a', 'b', 'c']);
    expect(asked).toEqual(['0', '2']);
    expect(reconnects).toEqual([expect.any(StreamClosed)]);
    expect(events.reconnects).toBe(1);
  });

  it('resumes after the last frame whose handler returned: one that threw is sent again', async () => {
    answer = (_req, res) => {
      stream(res);
      res.write(asked.length === 1 ? 'id: 1\ndata: a\n\nid: 2\ndata: bad\n\n' : 'id: 2\ndata: b\n\n');
    };
    const seen: string[] = [];
    let failed = false;
    await new EventStream({ url, reconnect: fast }).follow((frame) => {
      if (frame.data === 'bad' && !failed) {
        failed = true;
        throw new Error('could not apply it');
      }
      seen.push(frame.data);
      return frame.data === 'b';
    });
    expect(seen).toEqual(['a', 'b']);
    expect(asked).toEqual([null, '1']);
  });

  it('ends with the error a refusal maps to; reconnects the others, moving between URLs', async () => {
    const paths: string[] = [];
    answer = (req, res) => {
      paths.push(req.url!);
      res.writeHead(req.url === '/gone' ? 410 : 503, { 'content-type': 'application/json' }).end('{"message":"no"}');
    };
    const refusal = new EventStream({
      url: (connection) => (connection === 0 ? url : url.replace('/events', '/gone')),
      reconnect: fast,
      refused: ({ status, body }) => (status === 410 ? new Error(`gone: ${body}`) : undefined),
    });
    await expect(refusal.follow(() => true)).rejects.toThrow('gone: {"message":"no"}');
    expect(paths).toEqual(['/events', '/gone']);
  });

  it('gives up after maxFailures connections in a row without a frame, with the last error', async () => {
    answer = (_req, res) => res.writeHead(503).end('busy');
    await expect(new EventStream({ url, reconnect: fast, maxFailures: 2 }).follow(() => true)).rejects.toThrow(/answered 503: busy/);
    expect(asked).toHaveLength(3);
  });

  it('drops a connection that brings nothing for idleTimeoutMs and opens another', async () => {
    answer = (_req, res, connection) => {
      stream(res);
      if (connection === 1) res.write('data: late\n\n');
    };
    const errors: unknown[] = [];
    await new EventStream({ url, idleTimeoutMs: 100, reconnect: fast, onReconnect: ({ error }) => errors.push(error) }).follow(() => true);
    expect(errors).toEqual([expect.any(IdleConnection)]);
  });

  it('stops when its signal aborts, with the reason', async () => {
    answer = (_req, res) => stream(res);
    const controller = new AbortController();
    const following = new EventStream({ url, signal: controller.signal }).follow(() => true);
    setTimeout(() => controller.abort(new Error('shutting down')), 50);
    await expect(following).rejects.toThrow('shutting down');
  });
});
