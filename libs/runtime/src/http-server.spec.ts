import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { MACHINE_KEEP_ALIVE, sendJson } from './http-server';

describe('sendJson', () => {
  let server: Server;
  afterEach(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('answers JSON, not cached, no referrer, keeping headers set before; HEAD gets no body', async () => {
    server = createServer((req, res) => {
      res.setHeader('www-authenticate', 'Bearer');
      sendJson(res, 401, { error: 'ü' }, { headOnly: req.method === 'HEAD' });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const ask = (method: string) =>
      new Promise<{ status?: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
        request({ port, method, host: '127.0.0.1' }, (res) => {
          let body = '';
          res.on('data', (chunk) => (body += chunk));
          res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
        })
          .on('error', reject)
          .end();
      });
    const get = await ask('GET');
    expect(get).toMatchObject({ status: 401, body: '{"error":"ü"}' });
    expect(get.headers).toMatchObject({
      'content-type': 'application/json; charset=utf-8',
      'content-length': String(Buffer.byteLength('{"error":"ü"}')),
      'cache-control': 'no-store',
      'referrer-policy': 'no-referrer',
      'www-authenticate': 'Bearer',
    });
    expect((await ask('HEAD')).body).toBe('');
  });
});

it('edge → machine: the edge drops an idle connection well before the machine may close it', () => {
  expect(MACHINE_KEEP_ALIVE.serverMs - MACHINE_KEEP_ALIVE.clientIdleMs).toBeGreaterThanOrEqual(5_000);
});
