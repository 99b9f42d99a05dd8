import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { randomUUID } from 'node:crypto';
import { FlyApiDouble, FlyProxyDouble, nodeMachineRunner, previewContainerRunner, type DoubleMachine, type MachineRunner } from '../src';

/**
 * FlyApiDouble with a runner: each machine a real process. The machine here is a
 * small node server: `/health` (503 until `/become-healthy` when START_UNHEALTHY),
 * `/env`, `/last-health` (the last health probe's method and headers), `/exit`.
 * SPAWN_CHILD starts a `sleep` beside it (in its process group); IGNORE_SIGTERM
 * makes it outlive a SIGTERM.
 */
const MACHINE_SCRIPT = `
const http = require('node:http');
const { spawn } = require('node:child_process');
let healthy = process.env.START_UNHEALTHY !== '1';
let lastHealth = null;
const child = process.env.SPAWN_CHILD === '1' ? spawn('sleep', ['1000'], { stdio: 'ignore' }) : null;
process.on('SIGTERM', () => { if (process.env.IGNORE_SIGTERM !== '1') process.exit(0); });
const server = http.createServer((req, res) => {
  if (req.url === '/health') {
    lastHealth = { method: req.method, headers: req.headers };
    res.writeHead(healthy ? 200 : 503).end();
  } else if (req.url === '/become-healthy') {
    healthy = true;
    res.end('ok');
  } else if (req.url === '/last-health') {
    res.end(JSON.stringify(lastHealth));
  } else if (req.url === '/env') {
    res.end(JSON.stringify({ env: process.env, pid: process.pid, childPid: child && child.pid, cwd: process.cwd() }));
  } else if (req.url === '/exit') {
    res.end('bye', () => process.exit(Number(process.env.EXIT_CODE || 0)));
  } else {
    res.writeHead(404).end();
  }
});
server.listen(Number(process.env.PORT), process.env.HOST, () => console.log('listening on ' + process.env.HOST + ' ' + process.env.PORT));
`;

const APP = 'vp-runner-test';
const TOKEN = 'runner-token';
const SERVICE_CHECK = { type: 'http', port: 8080, path: '/health', interval: '1s', timeout: '1s' };

let root: string;
let workRoot: string;
let script: string;
let api: FlyApiDouble | undefined;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'vp-fly-runner-'));
  workRoot = join(root, 'machines');
  script = join(root, 'machine.js');
  writeFileSync(script, MACHINE_SCRIPT);
  mkdirSync(workRoot);
});

afterEach(async () => {
  await api?.close();
  api = undefined;
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

async function startApi(runner: MachineRunner = nodeMachineRunner({ entry: script, workRoot })): Promise<FlyApiDouble> {
  api = await FlyApiDouble.start({ token: TOKEN, apps: [APP], runMachine: runner, checkIntervalScale: 0.05 });
  return api;
}

async function call(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${api!.url}/apps/${APP}${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

async function createMachine(config: Record<string, unknown> = {}, env: Record<string, string> = {}): Promise<DoubleMachine> {
  const created = await call('POST', '/machines', {
    config: {
      image: 'registry.fly.io/vp-runner-test:1',
      env,
      services: [{ internal_port: 8080, protocol: 'tcp', ports: [{ port: 80, handlers: ['http'] }], checks: [SERVICE_CHECK] }],
      ...config,
    },
  });
  expect(created.status).toBe(200);
  return created.body;
}

async function machine(id: string): Promise<DoubleMachine> {
  return (await call('GET', `/machines/${id}`)).body;
}

async function until<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function untilState(id: string, state: string): Promise<DoubleMachine> {
  return until(`machine ${id} to be ${state}`, async () => {
    const m = await machine(id);
    return m.state === state && m;
  });
}

/** Started, and its service check passed: the process listens (a machine is `started` as soon as its process runs). */
async function untilServing(id: string): Promise<DoubleMachine> {
  await until(`machine ${id} to serve`, () => api!.servesRequests(APP, id));
  return machine(id);
}

/** A request straight to the machine's process, past any proxy. */
async function machineText(id: string, path: string): Promise<string> {
  const endpoint = api!.endpointOf(APP, id);
  if (!endpoint) throw new Error(`machine ${id} has no process`);
  const res = await fetch(`http://[${endpoint.host}]:${endpoint.port}${path}`);
  return res.text();
}

async function machineGet(id: string, path: string): Promise<any> {
  return JSON.parse(await machineText(id, path));
}

/** Whether a process runs: a zombie (ended, its parent gone, not reaped yet by init) does not. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

describe('FlyApiDouble with a machine runner', () => {
  it("runs a started machine's process with config.env, Fly's variables and a port on ::1", async () => {
    await startApi();
    const created = await createMachine({ metadata: { fly_process_group: 'app' }, guest: { cpu_kind: 'shared', cpus: 1, memory_mb: 512 } }, { GREETING: 'hello', PORT: '8080', HOST: '::' });
    expect((await untilState(created.id, 'started')).state).toBe('started');
    const started = await untilServing(created.id);
    const endpoint = api!.endpointOf(APP, created.id);
    expect(endpoint).toEqual({ host: '::1', port: expect.any(Number) });
    const { env, cwd } = await machineGet(created.id, '/env');
    expect(env).toMatchObject({
      GREETING: 'hello',
      FLY_APP_NAME: APP,
      FLY_MACHINE_ID: created.id,
      FLY_ALLOC_ID: created.id,
      FLY_REGION: started.region,
      FLY_PRIVATE_IP: started.private_ip,
      FLY_IMAGE_REF: 'registry.fly.io/vp-runner-test:1',
      FLY_MACHINE_VERSION: started.instance_id,
      FLY_PROCESS_GROUP: 'app',
      FLY_VM_MEMORY_MB: '512',
      PORT: String(endpoint!.port),
      HOST: '::1',
    });
    expect(env.FLY_PUBLIC_IP).toMatch(/^[0-9a-f:]+$/);
    // A fresh folder under the work root of its own, with WORK_DIR inside.
    expect(dirname(cwd)).toBe(workRoot);
    expect(env.WORK_DIR).toBe(join(cwd, 'work'));
    expect(existsSync(env.WORK_DIR)).toBe(true);
    expect(api!.outputOf(APP, created.id)).toContain(`listening on ::1 ${endpoint!.port}`);
  });

  it('probes top-level and service checks, named as Fly names them; only service checks decide whether it serves', async () => {
    await startApi();
    const created = await createMachine(
      {
        checks: {
          alive: { type: 'tcp', port: 8080, interval: '1s', timeout: '1s' },
          later: { type: 'http', port: 8080, path: '/health', interval: '1s', grace_period: '1h' },
        },
        services: [
          {
            internal_port: 8080,
            protocol: 'tcp',
            ports: [{ port: 80, handlers: ['http'] }],
            checks: [{ ...SERVICE_CHECK, method: 'head', headers: [{ name: 'x-probe', values: ['fly'] }] }],
          },
        ],
      },
      { START_UNHEALTHY: '1' },
    );
    await untilState(created.id, 'started');
    const byName = async () => Object.fromEntries(((await machine(created.id)).checks ?? []).map((c) => [c.name, c]));
    await until('the tcp check to pass and the service check to fail', async () => {
      const checks = await byName();
      return checks.alive?.status === 'passing' && checks['servicecheck-00-http-8080']?.output.includes('503') && checks;
    });
    expect(api!.servesRequests(APP, created.id)).toBe(false);
    expect(api!.routableMachines(APP)).toEqual([]);
    expect(await machineGet(created.id, '/last-health')).toMatchObject({ method: 'HEAD', headers: { 'x-probe': 'fly' } });

    expect(await machineText(created.id, '/become-healthy')).toBe('ok');
    await until('the service check to pass', async () => (await byName())['servicecheck-00-http-8080']?.status === 'passing');
    expect(api!.servesRequests(APP, created.id)).toBe(true);
    expect(api!.routableMachines(APP).map((m) => m.id)).toEqual([created.id]);
    // Its grace period (an hour) has not passed: never probed.
    expect((await byName()).later).toMatchObject({ status: 'critical', output: 'waiting for the first check' });
  });

  it('a process that exits moves its machine to stopped, with the exit code in an exit event; with auto_destroy to destroyed', async () => {
    await startApi();
    const kept = await createMachine({}, { EXIT_CODE: '3' });
    const destroyedOnExit = await createMachine({ auto_destroy: true });
    await untilServing(kept.id);
    await untilServing(destroyedOnExit.id);
    expect(await machineText(kept.id, '/exit')).toBe('bye');
    expect(await machineText(destroyedOnExit.id, '/exit')).toBe('bye');

    const stopped = await untilState(kept.id, 'stopped');
    expect(stopped.events.find((e) => e.type === 'exit')?.request).toEqual({ exit_event: { exit_code: 3, requested_stop: false } });
    expect(api!.endpointOf(APP, kept.id)).toBeNull();
    await untilState(destroyedOnExit.id, 'destroyed');
  });

  it('destroy ends the process (and what it started) before the machine is destroyed', async () => {
    await startApi();
    const created = await createMachine({}, { SPAWN_CHILD: '1' });
    await untilServing(created.id);
    const { pid, childPid } = await machineGet(created.id, '/env');
    expect(alive(pid) && alive(childPid)).toBe(true);

    expect((await call('DELETE', `/machines/${created.id}?force=true`)).status).toBe(200);
    await untilState(created.id, 'destroyed');
    expect(alive(pid)).toBe(false);
    await until('the child to be gone', () => !alive(childPid));
  });

  it("stop sends SIGTERM, then SIGKILL after stop_config.timeout when the process outlives it", async () => {
    await startApi();
    const polite = await createMachine();
    const stubborn = await createMachine({ stop_config: { timeout: '400ms' } }, { IGNORE_SIGTERM: '1' });
    await untilServing(polite.id);
    await untilServing(stubborn.id);

    let began = Date.now();
    await call('POST', `/machines/${polite.id}/stop`);
    await untilState(polite.id, 'stopped');
    expect(Date.now() - began).toBeLessThan(400);

    began = Date.now();
    await call('POST', `/machines/${stubborn.id}/stop`);
    expect((await machine(stubborn.id)).state).toBe('stopping');
    const stopped = await untilState(stubborn.id, 'stopped');
    expect(Date.now() - began).toBeGreaterThanOrEqual(400);
    expect(stopped.events.find((e) => e.type === 'exit')?.request).toEqual({ exit_event: { exit_code: -1, requested_stop: true } });
  });

  it('a machine whose process cannot start is failed', async () => {
    await startApi(nodeMachineRunner({ entry: join(root, 'missing.js') }));
    const created = await createMachine();
    const failed = await untilState(created.id, 'failed');
    expect(failed.events.find((e) => e.type === 'exit')?.request).toMatchObject({ error: expect.stringContaining('missing.js') });
  });

  it('previewContainerRunner runs the built preview container as a machine: a pooled one passes its service check and serves its page through the proxy', async () => {
    const entry = resolve(__dirname, '../../../dist/apps/preview-container/src/main.js');
    if (!existsSync(entry)) throw new Error(`${entry} is missing: run npm run build first`);
    await startApi(previewContainerRunner({ entry, workRoot }));
    const proxy = await FlyProxyDouble.start({ api: api!, app: APP });
    try {
      const routeId = randomUUID();
      // The provider's values for the port, host and folder: the runner's take their place.
      const created = await createMachine({}, { POOL_CLAIM_TOKEN: 'pool-claim-token-0123456789', ROUTE_ID: routeId, PORT: '8080', HOST: '::', WORK_DIR: '/app/work' });
      await until('the preview container to pass its service check', () => api!.servesRequests(APP, created.id), 30_000).catch((error: Error) => {
        throw new Error(`${error.message}\n${api!.outputOf(APP, created.id)}`);
      });
      expect(api!.endpointOf(APP, created.id)?.host).toBe('::1');
      const page = await fetch(`http://${routeId}.localhost:${proxy.port}/`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('/@vite/client');
    } finally {
      await proxy.close();
    }
  });

  it('close() ends every process, and what they started', async () => {
    const double = await startApi();
    const machines = [await createMachine({}, { SPAWN_CHILD: '1' }), await createMachine({ stop_config: { timeout: '300ms' } }, { SPAWN_CHILD: '1', IGNORE_SIGTERM: '1' })];
    const pids: number[] = [];
    for (const m of machines) {
      await untilServing(m.id);
      const { pid, childPid } = await machineGet(m.id, '/env');
      pids.push(pid, childPid);
    }
    expect(pids.every(alive)).toBe(true);
    // The one that ignores SIGTERM is killed after its stop timeout.
    await double.close();
    api = undefined;
    await until('every process to be gone', () => pids.every((pid) => !alive(pid)));
  });
});
