/**
 * A preview container as Fly.io runs it (FLY_MACHINE_ID set, a routes token),
 * as a real process: from its first second, and while it waits in the warm
 * pool, it answers requests for other previews with `fly-replay` (HTTP and
 * websocket upgrades alike), and its service check (`/serving`) says when Fly's
 * proxy may send it requests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '@velocity/runtime';
import { stopProcess } from '@velocity/ops';
import { upgradeHead } from '@velocity/testing';

const REPO_ROOT = join(__dirname, '../../..');
const ENTRY = join(REPO_ROOT, 'dist/apps/preview-container/src/main.js');
const OWN_MACHINE = '0e286d9b4f1d87';
const OTHER_MACHINE = '3d8d9e1c5e7e18';
const OWN_ROUTE = randomUUID();
const OTHER_ROUTE = randomUUID();
const ENDED_ROUTE = randomUUID();
const ROUTES_TOKEN = `routes-${randomBytes(8).toString('hex')}`;

describe('a preview container on Fly.io: fly-replay from its first second', () => {
  let routes: Server;
  const lookups: { routeId: string; authorization?: string }[] = [];
  let machine: ChildProcess;
  let port: number;
  let workDir: string;
  const logs: string[] = [];

  beforeAll(async () => {
    routes = createServer((req, res) => {
      const routeId = req.url!.split('/').pop()!;
      lookups.push({ routeId, authorization: req.headers.authorization });
      const json = { 'content-type': 'application/json' };
      if (routeId === OTHER_ROUTE) return res.writeHead(200, json).end(JSON.stringify({ routeId, machineId: OTHER_MACHINE }));
      if (routeId === ENDED_ROUTE) return res.writeHead(410, json).end(JSON.stringify({ statusCode: 410, field: 'routeId' }));
      res.writeHead(404, json).end(JSON.stringify({ statusCode: 404, field: 'routeId' }));
    });
    await new Promise<void>((resolve) => routes.listen(0, '127.0.0.1', resolve));
    port = await freePort();
    workDir = mkdtempSync(join(tmpdir(), 'vp-fly-routing-'));
    // A pooled machine: no session, no machine token; only its route id, claim secret and routes token.
    machine = spawn(process.execPath, [ENTRY], {
      env: {
        PATH: process.env.PATH ?? '',
        PORT: String(port),
        HOST: '::1',
        WORK_DIR: workDir,
        ROUTE_ID: OWN_ROUTE,
        POOL_CLAIM_TOKEN: randomBytes(16).toString('hex'),
        TEMPLATE_TYPE: 'react',
        FLY_MACHINE_ID: OWN_MACHINE,
        ROUTES_URL: `http://127.0.0.1:${(routes.address() as AddressInfo).port}/v1/routes`,
        ROUTES_TOKEN,
        LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    for (const stream of [machine.stdout!, machine.stderr!]) stream.setEncoding('utf8').on('data', (chunk: string) => logs.push(chunk));
    await waitFor('the machine to listen on [::1]', 10_000, async () => (await get('/serving')).status > 0);
  });

  afterAll(async () => {
    if (machine) await stopProcess(machine);
    await new Promise((resolve) => routes.close(resolve));
    rmSync(workDir, { recursive: true, force: true });
  });

  const get = (path: string, headers: Record<string, string> = {}) =>
    new Promise<{ status: number; headers: Record<string, unknown>; body: string }>((resolve) => {
      const req = request({ host: '::1', port, path, headers }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (chunk) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      });
      req.on('error', () => resolve({ status: 0, headers: {}, body: '' }));
      req.end();
    });

  async function waitFor(what: string, timeoutMs: number, ok: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (machine.exitCode !== null) throw new Error(`the machine exited (${machine.exitCode}) while waiting for ${what}:\n${logs.join('')}`);
      if (await ok()) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}:\n${logs.join('')}`);
  }

  it('while still loading, replays a request for another preview to its machine, with its routes token, and is not served by Fly yet', async () => {
    const serving = await get('/serving');
    expect(serving.status).toBe(503);
    const replayed = await get('/some/page?x=1', { host: `${OTHER_ROUTE}.preview.example.com` });
    expect(replayed.status).toBe(307);
    expect(replayed.headers['fly-replay']).toBe(`instance=${OTHER_MACHINE}`);
    expect(lookups.at(-1)).toEqual({ routeId: OTHER_ROUTE, authorization: `Bearer ${ROUTES_TOKEN}` });
    // Its own preview is not ready yet: 503, not a replay.
    const own = await get('/', { host: `${OWN_ROUTE}.preview.example.com` });
    expect(own.status).toBe(503);
    expect(own.headers['fly-replay']).toBeUndefined();
  });

  it('replays a websocket upgrade for another preview instead of upgrading it', async () => {
    const head = await upgradeHead({ port, address: '::1' }, `${OTHER_ROUTE}.preview.example.com`);
    expect(head).toMatch(/^HTTP\/1\.1 307 /);
    expect(head).toContain(`fly-replay: instance=${OTHER_MACHINE}`);
  });

  it('does not send on a request Fly already replayed (a stale route would loop), nor to itself; an ended session is 410', async () => {
    const again = await get('/', { host: `${OTHER_ROUTE}.preview.example.com`, 'fly-replay-src': `instance=${'1'.repeat(14)};region=ams;t=1` });
    expect(again.status).toBe(404);
    expect(again.headers['fly-replay']).toBeUndefined();
    expect((await get('/', { host: `${ENDED_ROUTE}.preview.example.com` })).status).toBe(410);
    expect((await get('/', { host: `${randomUUID()}.preview.example.com` })).status).toBe(404);
  });

  it('passes its service check once it serves its own preview (a pooled machine included), and still replays', async () => {
    await waitFor('/serving to answer 200', 60_000, async () => (await get('/serving')).status === 200);
    expect((await get('/', { host: `${OWN_ROUTE}.preview.example.com` })).status).toBe(200);
    expect((await get('/', { host: `${OTHER_ROUTE}.preview.example.com` })).headers['fly-replay']).toBe(`instance=${OTHER_MACHINE}`);
  });
});
