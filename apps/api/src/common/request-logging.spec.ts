import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createPino, loggerOver } from '@velocity/runtime';
import { requestContext, requestLogFields } from './request-context';
import { requestLogging } from './request-logging';

/**
 * The api's request lines on a plain HTTP server with the api's two first
 * middlewares: the request id reused, the flat `request` line, nothing of the
 * headers or the query string, the request's fields on the handler's lines too.
 */
describe('request logging', () => {
  const raw: string[] = [];
  const pino = createPino('request-logging-test', 'debug', { context: requestLogFields, destination: { write: (chunk: string) => void raw.push(chunk) } });
  const logger = loggerOver(pino);
  const context = requestContext();
  const logging = requestLogging(pino);
  let server: Server;
  let base: string;

  beforeAll(async () => {
    server = createServer((req, res) =>
      context(req, res, () =>
        logging(req, res, () => {
          logger.info('handler line');
          res.statusCode = req.url?.startsWith('/boom') ? 500 : 200;
          res.end('ok');
        }),
      ),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(() => new Promise((resolve) => server.close(resolve)));
  beforeEach(() => (raw.length = 0));

  const lines = () => raw.map((line) => JSON.parse(line) as Record<string, unknown>);
  const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

  it("logs one flat `request` line with the request's id, and no header or query string", async () => {
    const sessionId = '00000000-0000-4000-8000-0000000000aa';
    const res = await fetch(`${base}/v1/sessions/${sessionId}/events?token=secret-query`, {
      headers: { authorization: 'Bearer secret-header', 'x-request-id': 'spec-request-1' },
    });
    expect(res.headers.get('x-request-id')).toBe('spec-request-1');
    await settle();
    const [handler, request] = lines();
    expect(handler).toMatchObject({ msg: 'handler line', requestId: 'spec-request-1', sessionId });
    expect(request).toEqual({
      level: 'info',
      time: expect.any(String),
      app: 'request-logging-test',
      msg: 'request',
      requestId: 'spec-request-1',
      method: 'GET',
      path: `/v1/sessions/${sessionId}/events`,
      status: 200,
      ms: expect.any(Number),
      sessionId,
    });
    for (const line of raw) {
      expect(line).not.toContain('secret');
      expect(line.match(/"requestId"/g)).toHaveLength(1);
    }
  });

  it('logs probes at debug and a 5xx as any other request line', async () => {
    await fetch(`${base}/health`);
    await fetch(`${base}/boom`);
    await settle();
    const requests = lines().filter((line) => line.msg === 'request');
    expect(requests.map((line) => [line.level, line.path, line.status])).toEqual([
      ['debug', '/health', 200],
      ['info', '/boom', 500],
    ]);
    expect(requests[0].requestId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('writes no line for a probe or a preview asset when debug is off, and still the line of any other request', async () => {
    pino.level = 'info';
    try {
      await fetch(`${base}/health`);
      await fetch(base.replace('127.0.0.1', '00000000-0000-4000-8000-0000000000bb.localhost') + '/src/App.jsx');
      await fetch(`${base}/v1/projects`);
      await settle();
      expect(lines().filter((line) => line.msg === 'request').map((line) => line.path)).toEqual(['/v1/projects']);
    } finally {
      pino.level = 'debug';
    }
  });
});
