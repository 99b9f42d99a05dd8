import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openHttp, readText, requestText, serverBaseOf, unixSocketOf, unixSocketUrl } from './http-client';

describe('URLs of servers on Unix sockets (`http://unix:<socket>:<path>`)', () => {
  it('names a socket and, after it, the request path', () => {
    expect(unixSocketUrl('/run/vp-api/api.sock')).toBe('http://unix:/run/vp-api/api.sock:');
    expect(unixSocketOf('http://unix:/run/vp-api/api.sock:/v1/machines/x/files?a=1')).toEqual({ socketPath: '/run/vp-api/api.sock', path: '/v1/machines/x/files?a=1' });
    expect(unixSocketOf(`${unixSocketUrl('/srv/m/http.sock')}/health`)).toEqual({ socketPath: '/srv/m/http.sock', path: '/health' });
    expect(unixSocketOf(unixSocketUrl('/srv/m/http.sock'))).toEqual({ socketPath: '/srv/m/http.sock', path: '/' });
  });

  it('is no other URL', () => {
    for (const url of ['http://127.0.0.1:3000/health', 'http://unix.example:80/x', 'https://unix:/s.sock:/x', 'http://unix:relative.sock:/x']) {
      expect(unixSocketOf(url)).toBeNull();
    }
    expect(() => unixSocketUrl('/odd:path.sock')).toThrow(/may not hold ":"/);
  });

  it('keeps its socket as the base of other paths, where an http URL keeps its origin', () => {
    expect(serverBaseOf('http://unix:/run/vp-api/api.sock:/v1/machines/x/files')).toBe('http://unix:/run/vp-api/api.sock:');
    expect(serverBaseOf('http://api.internal:3000/v1/machines/x/files')).toBe('http://api.internal:3000');
  });
});

describe('openHttp and requestText on a Unix socket', () => {
  let dir: string;
  let server: Server;
  let socketPath: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vp-http-client-'));
    socketPath = join(dir, 'server.sock');
    server = createServer(async (req, res) => {
      const body = await readText(req);
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ method: req.method, url: req.url, auth: req.headers.authorization, body }));
    });
    await new Promise<void>((done) => server.listen(socketPath, done));
  });

  afterAll(async () => {
    await new Promise((done) => server?.close(done));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('sends the method, path, headers and body, and reads the answer', async () => {
    const res = await requestText(`${unixSocketUrl(socketPath)}/v1/x?y=1`, { method: 'POST', headers: { authorization: 'Bearer t' }, body: 'hello' });
    expect(res.status).toBe(201);
    expect(JSON.parse(res.body)).toEqual({ method: 'POST', url: '/v1/x?y=1', auth: 'Bearer t', body: 'hello' });
  });

  it('fails as a connection does where no server listens', async () => {
    await expect(openHttp(`${unixSocketUrl(join(dir, 'none.sock'))}/health`)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
