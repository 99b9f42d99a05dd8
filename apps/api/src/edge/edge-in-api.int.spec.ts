import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { stopProcess } from '@velocity/ops';
import { freePort } from '@velocity/runtime';
import { PostgresSessionStore } from '@velocity/session-store';
import { startTestApi, testConfig, upgradeHead } from '@velocity/testing';

const OPERATOR_TOKEN = 'edge-in-api-operator-token';

/**
 * The edge in a real api process: a preview request goes to its machine from
 * the HTTP server itself, whatever its path, and reaches nothing of Express or
 * Nest (no route of the api answers it, no middleware of the api writes its
 * request line, even at debug); it is still counted in the api's metrics. The
 * api's own origin is served by Express and Nest as before.
 */
describe('the edge in the api', () => {
  const config = testConfig({ MACHINE_PROVIDER: 'noop', LOG_LEVEL: 'debug', OPERATOR_TOKEN });
  const store = new PostgresSessionStore(config.DATABASE_URL);
  let api: ChildProcess;
  let output: string[];
  let base: string;
  let port: number;
  let machine: Server;
  let routeId: string;

  beforeAll(async () => {
    machine = createServer((req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end(`machine: ${req.url} ${req.headers['x-request-id']}`));
    machine.on('upgrade', (_req: IncomingMessage, socket: Socket) => socket.end('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n'));
    await new Promise<void>((done) => machine.listen(0, '127.0.0.1', done));
    routeId = await activeSession(`http://127.0.0.1:${(machine.address() as AddressInfo).port}`);
    port = await freePort();
    ({ child: api, output, base } = await startTestApi({ ...config, API_PORT: port }));
  }, 40_000);

  afterAll(async () => {
    if (api) await stopProcess(api);
    await new Promise((done) => machine?.close(done));
    await store.close();
  });

  async function activeSession(containerUrl: string): Promise<string> {
    const project = await store.ensureProject({ id: randomUUID(), name: 'edge in the api', templateType: 'react' });
    const id = randomUUID();
    await store.createSession({ id, projectId: project.id, tier: 'free', resourceLimits: { cpus: 1, memoryMb: 512 }, status: 'creating' });
    await store.transition(id, 'starting', { containerId: `noop-${id}`, containerUrl, routeId: id });
    await store.transition(id, 'active', { previewUrl: `http://${id}.localhost:${port}/`, ttlSeconds: 600 });
    return id;
  }

  const preview = (id: string, path: string) => `http://${id}.localhost:${port}${path}`;
  /** The api's log lines that carry this request id. */
  const linesOf = (requestId: string) => output.filter((line) => line.includes(requestId));
  const settle = () => new Promise((resolve) => setTimeout(resolve, 300));

  it("sends a preview's requests to its machine whatever the path, the api's own routes included, and nothing of the api sees them", async () => {
    const ids: string[] = [];
    for (const path of ['/health', '/v1/sessions', '/metrics', '/p/x/', '/src/App.jsx?t=1']) {
      const requestId = `edge-preview-${randomUUID()}`;
      ids.push(requestId);
      const res = await fetch(preview(routeId, path), { headers: { 'x-request-id': requestId } });
      expect({ status: res.status, body: await res.text() }).toEqual({ status: 200, body: `machine: ${path} ${requestId}` });
      expect(res.headers.get('x-request-id')).toBe(requestId);
    }
    expect(await upgradeHead({ port }, `${routeId}.localhost:${port}`)).toMatch(/^HTTP\/1\.1 101 /);
    const unknown = randomUUID();
    const missing = await fetch(preview(unknown, '/health'));
    expect({ status: missing.status, body: await missing.json() }).toEqual({ status: 404, body: { error: 'Session not found', routeId: unknown } });

    // The api's own request, for comparison: its request line is written (debug is on).
    const apiRequestId = `edge-api-${randomUUID()}`;
    expect((await fetch(`${base}/health`, { headers: { 'x-request-id': apiRequestId } })).status).toBe(200);
    await settle();
    expect(linesOf(apiRequestId)).toEqual([expect.stringContaining('"msg":"request"')]);
    for (const requestId of ids) expect(linesOf(requestId)).toEqual([]);
  });

  it("redirects old preview links on the api's origin", async () => {
    const legacy = await fetch(`${base}/p/${routeId}/src/main.js`, { redirect: 'manual' });
    expect({ status: legacy.status, location: legacy.headers.get('location') }).toEqual({ status: 308, location: `http://${routeId}.localhost:${port}/src/main.js` });
  });

  it("counts previews' requests in the api's request metrics, as the route `preview`", async () => {
    const count = async () => {
      const text = await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${OPERATOR_TOKEN}` } })).text();
      const line = text.split('\n').find((l) => l.startsWith('vp_http_request_seconds_count{') && l.includes('route="preview"') && l.includes('status="200"') && l.includes('method="GET"'));
      return line ? Number(line.split(' ').pop()) : 0;
    };
    const before = await count();
    for (let i = 0; i < 3; i++) await (await fetch(preview(routeId, '/counted'))).text();
    await settle();
    expect((await count()) - before).toBe(3);
  });
});
