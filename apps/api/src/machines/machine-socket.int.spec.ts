import { spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { lstat, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMachineToken, createRoutesToken, type Config } from '@velocity/contracts';
import { createRedis, stopProcess } from '@velocity/ops';
import { PostgresSessionStore } from '@velocity/session-store';
import { requestText, unixSocketUrl, freePort } from '@velocity/runtime';
import { testConfig, startTestApi } from '@velocity/testing';
import { isMachineRoute } from './machine-socket';

/**
 * The api's socket for sandboxed local machines (MACHINE_API_SOCKET), on a
 * real api process: the machine routes only, never the edge to another
 * machine, any user may connect, a stale socket is replaced at start, and the
 * socket is gone once the api has stopped.
 */
describe('the machine socket of the api', () => {
  let config: Config;
  let api: ChildProcess | undefined;
  let base: string;
  let socketPath: string;
  let machineApi: string;
  let dir: string;
  let store: PostgresSessionStore;
  /** A machine of a live session, which requests over the socket must not reach through the edge. */
  let machine: Server;
  let machineRequests = 0;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vp-machine-socket-'));
    socketPath = join(dir, 'api', 'api.sock');
    machineApi = unixSocketUrl(socketPath);
    leaveStaleSocket(socketPath);
    config = testConfig({ API_PORT: await freePort(), MACHINE_API_SOCKET: socketPath });
    ({ child: api, base } = await startTestApi(config));
    store = new PostgresSessionStore(config.DATABASE_URL, { max: 2 });
    machine = createServer((_req, res) => {
      machineRequests += 1;
      res.end('a machine');
    });
    await new Promise<void>((done) => machine.listen(0, '127.0.0.1', done));
  }, 40_000);

  afterAll(async () => {
    if (api) await stopProcess(api);
    await store?.close();
    await new Promise((done) => machine?.close(done));
    if (dir) await rm(dir, { recursive: true, force: true });
    if (!config) return;
    const redis = createRedis(config.REDIS_URL);
    const keys = await redis.keys(`${config.QUEUE_PREFIX}:*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });

  const overSocket = (path: string, headers: Record<string, string> = {}) => requestText(`${machineApi}${path}`, { headers, signal: AbortSignal.timeout(10_000) });

  /** An active session of a new project holding `hello.txt`, routed to the test's machine, and its machine token. */
  async function activeSession() {
    const created = await fetch(`${base}/v1/projects`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'socket', templateType: 'react' }) });
    const projectId = ((await created.json()) as { id: string }).id;
    await fetch(`${base}/v1/projects/${projectId}/files/hello.txt`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ content: 'hello' }) });
    const id = randomUUID();
    await store.createSession({ id, projectId, tier: 'free', resourceLimits: { cpus: 1, memoryMb: 512 }, status: 'creating' });
    await store.transition(id, 'starting', { containerId: `m-${id}`, containerUrl: `http://127.0.0.1:${(machine.address() as AddressInfo).port}`, routeId: id });
    await store.transition(id, 'active', { previewUrl: `http://${id}.localhost/`, ttlSeconds: 600 });
    return { id, token: createMachineToken({ sessionId: id, projectId }, config.MACHINE_TOKEN_SECRET, 600) };
  }

  it('replaced the stale socket it found, and any user may connect to it', async () => {
    const stat = await lstat(socketPath);
    expect(stat.isSocket()).toBe(true);
    // Read and write for everyone: what connecting asks (execute means nothing on a socket).
    expect(stat.mode & 0o666).toBe(0o666);
  });

  it("serves a machine its session's files and routes lookups", async () => {
    const session = await activeSession();
    const files = await overSocket(`/v1/machines/${session.id}/files`, { authorization: `Bearer ${session.token}` });
    expect(files.status).toBe(200);
    expect(JSON.parse(files.body).files).toContainEqual({ path: 'hello.txt', content: 'hello' });
    expect((await overSocket(`/v1/routes/${session.id}`, { authorization: `Bearer ${createRoutesToken(session.id, config.MACHINE_TOKEN_SECRET, 60)}` })).status).toBe(200);
    expect((await overSocket(`/v1/machines/${session.id}/files`)).status).toBe(401);
  });

  it('answers 404 JSON for everything else, which the api serves on its port', async () => {
    const session = await activeSession();
    const others = [
      ['POST', '/v1/sessions'],
      ['GET', `/v1/sessions/${session.id}`],
      ['POST', '/v1/projects'],
      ['GET', '/health'],
      ['GET', '/metrics'],
      ['GET', '/'],
      ['GET', '/docs-json'],
      ['GET', '/v1/machines/..%2F..%2Findex.html'],
      ['GET', '/v1/machines/../../health'],
    ];
    for (const [method, path] of others) {
      const body = method === 'POST' ? { headers: { 'content-type': 'application/json' }, body: '{}' } : {};
      const res = await requestText(`${machineApi}${path}`, { method, ...body, signal: AbortSignal.timeout(10_000) });
      expect({ method, path, status: res.status, body: JSON.parse(res.body) }).toEqual({ method, path, status: 404, body: expect.objectContaining({ statusCode: 404, error: 'Not Found' }) });
    }
    expect((await fetch(`${base}/v1/sessions/${session.id}`)).status).toBe(200);
    expect((await fetch(`${base}/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).status).toBe(400);
    expect((await fetch(`${base}/health`)).status).toBe(200);
  });

  it("never proxies to a machine, whatever preview's Host a request names", async () => {
    const session = await activeSession();
    // The api's port proxies a preview's Host to its machine…
    const preview = await fetch(`http://${session.id}.localhost:${config.API_PORT}/v1/machines/${session.id}/files`);
    expect(await preview.text()).toBe('a machine');
    const seen = machineRequests;
    // …its machine socket does not: the request reaches the api's own route.
    const files = await overSocket(`/v1/machines/${session.id}/files`, { host: `${session.id}.localhost:${config.API_PORT}`, authorization: `Bearer ${session.token}` });
    expect(files.status).toBe(200);
    expect(JSON.parse(files.body).files).toContainEqual({ path: 'hello.txt', content: 'hello' });
    expect(machineRequests).toBe(seen);
  });

  it('is gone once the api has stopped', async () => {
    await stopProcess(api!);
    api = undefined;
    expect(await lstat(socketPath).catch((err: NodeJS.ErrnoException) => err.code)).toBe('ENOENT');
  });
});

describe('isMachineRoute', () => {
  it.each([
    ['/v1/machines/abc/files', true],
    ['/v1/machines/abc/file-changes?x=1', true],
    ['/v1/routes/abc', true],
    ['/v1/sessions', false],
    ['/v1/machines', false],
    ['/V1/MACHINES/abc/files', false],
    ['/v1/machines/../sessions', false],
    ['/v1/machines/%2e%2e/%2e%2e/health', false],
    ['/v1/machines/..%2F..%2Fhealth', false],
    ['/v1/machines/..%5C..%5Chealth', false],
    ['/v1/machines/%E0%A4%A', false],
    ['/x/v1/machines/abc', false],
  ])('%s: %s', (url, expected) => {
    expect(isMachineRoute(url)).toBe(expected);
  });
});

/** A socket file at `path` that nobody listens on any more: what an api killed with -9 leaves. */
function leaveStaleSocket(path: string): void {
  const script = "require('fs').mkdirSync(require('path').dirname(process.argv[1]), { recursive: true }); require('net').createServer().listen(process.argv[1], () => process.kill(process.pid, 'SIGKILL'))";
  const result = spawnSync(process.execPath, ['-e', script, path], { timeout: 10_000 });
  if (result.signal !== 'SIGKILL') throw new Error(`could not leave a stale socket at ${path}: ${result.stderr}`);
}
