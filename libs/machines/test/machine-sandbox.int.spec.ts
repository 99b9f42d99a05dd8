import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { chmod, lstat, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { LocalMachineProvider } from '../src/local-machine-provider';
import { SANDBOX_APP_DIR, SANDBOX_HOME, SANDBOX_WORK_DIR, chooseSandbox } from '../src/machine-sandbox';
import { TimeoutError, resourceLimitsOf } from '@velocity/contracts';
import { requestText, unixSocketOf } from '@velocity/runtime';
import { FIXTURES_DIR } from '@velocity/testing';
import type { Machine, MachineSpec } from '../src/machine-provider';

/**
 * Local machines in a bubblewrap sandbox: real processes under real bwrap.
 * A probe machine (fixtures/sandbox-probe.js) reports what it can see and do;
 * the same probe without the sandbox shows what the sandbox keeps from it.
 */
const PROBE = join(FIXTURES_DIR, 'sandbox-probe.js');
const REPO_ROOT = resolve(__dirname, '../../..');
/** MACHINE_UID's default: machines run as nobody when the provider is root. */
const MACHINE_UID = 65534;
const AS_ROOT = process.getuid?.() === 0;
const run = promisify(execFile);

interface Attempt {
  ok: boolean;
  value?: string;
  code?: string;
}

interface ProbeReport {
  uid: number;
  gid: number;
  env: Record<string, string>;
  processes: { pid: number; cmdline: Attempt; environ: Attempt }[];
  reads: (Attempt & { path: string })[];
  writable: string[];
  connects: { target: string; ok: boolean; code?: string }[];
}

function specOf(sessionId: string, env: Record<string, string> = {}, background = false): MachineSpec {
  return { sessionId, projectId: randomUUID(), templateType: 'react', resourceLimits: resourceLimitsOf('free'), env: { SESSION_ID: sessionId, ...env }, background };
}

async function reportOf(machine: Machine): Promise<ProbeReport> {
  // Node's HTTP client: a sandboxed machine is on a Unix socket.
  const res = await requestText(`${machine.url}/report`, { signal: AbortSignal.timeout(10_000) });
  return JSON.parse(res.body) as ProbeReport;
}

/** The loopback services of this host that hold every user's data (the test setup's Postgres and Redis). */
const HOST_SERVICES = ['127.0.0.1:5432', '127.0.0.1:6379'];

/** A TCP listener on the host's loopback, which counts the connections it gets. */
async function loopbackListener(): Promise<{ server: TcpServer; target: string; connections: () => number }> {
  let connections = 0;
  const server = createTcpServer((socket) => {
    connections += 1;
    socket.destroy();
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  return { server, target: `127.0.0.1:${(server.address() as AddressInfo).port}`, connections: () => connections };
}

/** A server on a Unix socket at `path` that any user may connect to (the machines' user too). */
async function listenOnSocket(server: Server, path: string): Promise<void> {
  await new Promise<void>((done) => server.listen(path, done));
  await chmod(path, 0o666);
}

/** `ps` lines (pid, pgid, niceness, pid namespace, args) of the processes whose arguments name `sessionId`. */
async function processLinesOf(sessionId: string): Promise<{ pid: number; pgid: number; ni: number; pidns: string; args: string }[]> {
  const { stdout } = await run('ps', ['-eo', 'pid=,pgid=,ni=,pidns=,args='], { maxBuffer: 16 * 1024 * 1024 });
  return stdout
    .split('\n')
    .filter((line) => line.includes(`--vp-machine=${sessionId}`))
    .map((line) => {
      const [pid, pgid, ni, pidns, ...args] = line.trim().split(/\s+/);
      return { pid: Number(pid), pgid: Number(pgid), ni: Number(ni), pidns, args: args.join(' ') };
    });
}

/** Niceness of every thread of every process in group `pgid`. */
async function nicenessOfGroup(pgid: number): Promise<number[]> {
  const { stdout } = await run('ps', ['-eLo', 'pgid=,ni=']);
  return stdout
    .split('\n')
    .map((line) => line.trim().split(/\s+/).map(Number))
    .filter(([group]) => group === pgid)
    .map(([, ni]) => ni);
}

async function waitFor<T>(what: string, timeoutMs: number, attempt: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await attempt();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
}

/**
 * A provider folder with a canary file outside any machine's work folder, a
 * canary file in the repo root, a canary variable in this process's
 * environment, and a machine whose work folder holds a canary file.
 */
function probeSetup(sandbox: 'bubblewrap' | 'none') {
  const canary = `canary-${randomBytes(12).toString('hex')}`;
  const repoCanary = join(REPO_ROOT, `.sandbox-canary-${randomBytes(6).toString('hex')}`);
  const state = {} as {
    dir: string;
    provider: LocalMachineProvider;
    providerCanary: string;
    otherMachineFile: string;
    other: Machine;
    listener: Awaited<ReturnType<typeof loopbackListener>>;
  };
  beforeAll(async () => {
    process.env.VP_SANDBOX_CANARY = canary;
    state.listener = await loopbackListener();
    state.dir = await mkdtemp(join(tmpdir(), 'vp-sandbox-'));
    // With an api socket: its folder is shown to sandboxed machines, read-only.
    state.provider = new LocalMachineProvider({ dir: state.dir, entry: PROBE, sandbox, apiSocket: join(state.dir, 'api', 'api.sock') });
    state.providerCanary = join(state.dir, 'canary.txt');
    await writeFile(state.providerCanary, canary);
    await writeFile(repoCanary, canary);
    state.other = await state.provider.create(specOf(randomUUID()));
    await state.provider.waitStarted(state.other, 20_000);
    state.otherMachineFile = join(state.dir, state.other.sessionId, 'work', 'secret.txt');
    await writeFile(state.otherMachineFile, canary);
  });
  afterAll(async () => {
    delete process.env.VP_SANDBOX_CANARY;
    for (const machine of (await state.provider?.list()) ?? []) await state.provider.destroy(machine.id);
    await new Promise((done) => state.listener?.server.close(done));
    await rm(repoCanary, { force: true });
    if (state.dir) await rm(state.dir, { recursive: true, force: true });
  });
  /**
   * Starts a probe machine that tries to read every canary file and to connect to the loopback listener and
   * the host's services; destroyed after the test's checks.
   */
  const probe = async (check: (report: ProbeReport, machine: Machine) => Promise<void> | void) => {
    const paths = [state.providerCanary, repoCanary, join(SANDBOX_APP_DIR, repoCanary.slice(REPO_ROOT.length)), state.otherMachineFile];
    const connect = [state.listener.target, ...HOST_SERVICES];
    const machine = await state.provider.create(specOf(randomUUID(), { PROBE_READ: JSON.stringify(paths), PROBE_CONNECT: JSON.stringify(connect) }));
    try {
      await state.provider.waitStarted(machine, 20_000);
      await check(await reportOf(machine), machine);
    } finally {
      await state.provider.destroy(machine.id);
    }
  };
  return { canary, state, probe };
}

/** The names a machine's environment may hold: the allow-list, what the spec gives, and PWD (set by bwrap). */
const ALLOWED_ENV = ['PATH', 'HOME', 'LANG', 'NODE_ENV', 'MIMALLOC_PURGE_DELAY', 'PORT', 'HOST', 'LISTEN_SOCKET', 'WORK_DIR', 'SESSION_ID', 'PROBE_READ', 'PROBE_CONNECT', 'PWD'];

/** Only allow-listed names, and nothing of the provider's environment (its canary). */
function expectAllowListedEnv(env: Record<string, string>, canary: string): void {
  expect(Object.keys(env).filter((name) => !ALLOWED_ENV.includes(name))).toEqual([]);
  expect(JSON.stringify(env)).not.toContain(canary);
}

describe('a machine in the bubblewrap sandbox', () => {
  const { canary, state, probe } = probeSetup('bubblewrap');

  it('is what the provider says', () => {
    expect(state.provider.isolation).toBe('sandbox');
    expect(state.provider.allowsUnsandboxedCode).toBe(false);
  });

  it('gets only the allow-listed environment, at the sandbox paths', async () => {
    await probe((report) => {
      expectAllowListedEnv(report.env, canary);
      expect(report.env).toMatchObject({ WORK_DIR: SANDBOX_WORK_DIR, HOME: SANDBOX_HOME, NODE_ENV: 'development', MIMALLOC_PURGE_DELAY: '0' });
    });
  });

  it("sees only its own processes, and no process's environment holds the canary", async () => {
    await probe((report) => {
      // bwrap's init and the probe: nothing of the host (this test, the services, other machines).
      expect(report.processes.map((p) => p.pid)).toEqual([1, 2]);
      for (const p of report.processes) expect(p.cmdline.value).toContain('sandbox-probe.js');
      expect(report.processes.every((p) => p.environ.ok)).toBe(true);
      for (const p of report.processes) expect(p.environ.value).not.toContain(canary);
    });
  });

  it("cannot read the provider's folder, the repo root or another machine's work folder", async () => {
    await probe((report) => {
      expect(report.reads.map(({ path, ok, code }) => ({ path, ok, code }))).toEqual(
        report.reads.map(({ path }) => ({ path, ok: false, code: 'ENOENT' })),
      );
      expect(JSON.stringify(report.reads)).not.toContain(canary);
    });
  });

  it('sees the repo parts the container needs, without the workspace links to the services', async () => {
    const paths = ['/opt/velocity/package.json', '/opt/velocity/node_modules/vite/package.json', '/opt/velocity/node_modules/@velocity/api/package.json', '/opt/velocity/apps/api/package.json'];
    const machine = await state.provider.create(specOf(randomUUID(), { PROBE_READ: JSON.stringify(paths) }));
    try {
      await state.provider.waitStarted(machine, 20_000);
      const { reads } = await reportOf(machine);
      expect(reads.map(({ path, ok }) => ({ path, ok }))).toEqual([
        { path: paths[0], ok: true },
        { path: paths[1], ok: true },
        { path: paths[2], ok: false },
        { path: paths[3], ok: false },
      ]);
    } finally {
      await state.provider.destroy(machine.id);
    }
  });

  it(`runs as ${AS_ROOT ? `uid ${MACHINE_UID}` : 'this user'}`, async () => {
    await probe((report) => {
      expect(report.uid).toBe(AS_ROOT ? MACHINE_UID : process.getuid?.());
    });
  });

  it('can write its work folder, its socket folder, /tmp and HOME, and nothing else', async () => {
    await probe((report) => {
      expect(report.writable.sort()).toEqual([SANDBOX_HOME, SANDBOX_WORK_DIR, '/tmp', '/run/machine'].sort());
    });
  });

  it("connects to nothing on the host's loopback: not a listener of this test, not Postgres (:5432), not Redis (:6379)", async () => {
    await probe((report) => {
      expect(report.connects.map(({ target, ok }) => ({ target, ok }))).toEqual([state.listener.target, ...HOST_SERVICES].map((target) => ({ target, ok: false })));
      // Refused at once: its own loopback, where nothing listens, not the host's.
      expect(new Set(report.connects.map((c) => c.code))).toEqual(new Set(['ECONNREFUSED']));
      expect(state.listener.connections()).toBe(0);
    });
  });

  it('serves on a Unix socket in its session folder, which the provider reaches (and finds again in the process table)', async () => {
    await probe(async (report, machine) => {
      expect(unixSocketOf(machine.url)).toEqual({ socketPath: join(state.dir, machine.sessionId, 'http.sock'), path: '/' });
      expect((await state.provider.findBySession(machine.sessionId))?.url).toBe(machine.url);
      expect(report.env).toMatchObject({ LISTEN_SOCKET: '/run/machine/http.sock' });
      expect(report.env.PORT).toBeUndefined();
    });
  });

  it('cannot have the host connect to another socket: a symlink where its socket belongs is never taken for it', async () => {
    // A socket of the host (as the api's edge could reach it), which the machine names by its host path.
    const decoyPath = join(state.dir, 'decoy.sock');
    let decoyRequests = 0;
    const decoy = createServer((_req, res) => {
      decoyRequests += 1;
      res.end('decoy');
    });
    await listenOnSocket(decoy, decoyPath);
    const machine = await state.provider.create(specOf(randomUUID(), { PROBE_SYMLINK_SOCKET: decoyPath }));
    // What the host's path of its socket names while the provider waits for it: never the symlink, not for a moment.
    const named = new Set<string>();
    let watching = true;
    const watch = (async () => {
      for (; watching; await new Promise((next) => setImmediate(next))) {
        const found = await lstat(unixSocketOf(machine.url)!.socketPath).catch(() => null);
        named.add(!found ? 'nothing' : found.isSocket() ? 'socket' : found.isSymbolicLink() ? 'symlink' : 'other');
      }
    })();
    try {
      await expect(state.provider.waitStarted(machine, 2_000)).rejects.toThrow(TimeoutError);
      watching = false;
      await watch;
      expect([...named]).toEqual(['nothing']);
      await expect(requestText(`${machine.url}/health`, { signal: AbortSignal.timeout(2_000) })).rejects.toMatchObject({ code: 'ENOENT' });
      expect(decoyRequests).toBe(0);
    } finally {
      watching = false;
      await state.provider.destroy(machine.id);
      await new Promise((done) => decoy.close(done));
    }
  });

  it('is one process to the provider (bwrap, whose group destroy ends), and destroy leaves none', async () => {
    const machine = await state.provider.create(specOf(randomUUID()));
    await state.provider.waitStarted(machine, 20_000);
    const lines = await processLinesOf(machine.sessionId);
    // bwrap, bwrap's init in the sandbox, and the probe: all in one process group.
    expect(lines).toHaveLength(3);
    expect(new Set(lines.map((l) => l.pgid)).size).toBe(1);
    const found = (await state.provider.processes()).filter((p) => p.sessionId === machine.sessionId);
    expect(found).toHaveLength(1);
    const outer = lines.find((l) => l.pid === found[0].pid);
    expect(outer?.args).toMatch(/^\S*bwrap /);
    expect(outer?.pgid).toBe(outer?.pid);
    await state.provider.destroy(machine.id);
    expect(await processLinesOf(machine.sessionId)).toEqual([]);
  });

  it(`starts a background machine at niceness 10, ${AS_ROOT ? 'back to 0 on restorePriority' : 'which restorePriority cannot raise without root'}`, async () => {
    const machine = await state.provider.create(specOf(randomUUID(), {}, true));
    try {
      await state.provider.waitStarted(machine, 20_000);
      const [{ pid }] = (await state.provider.processes()).filter((p) => p.sessionId === machine.sessionId);
      const before = await nicenessOfGroup(pid);
      expect(before.length).toBeGreaterThanOrEqual(3);
      expect(new Set(before)).toEqual(new Set([10]));
      expect(await state.provider.restorePriority(machine.id)).toBe(AS_ROOT);
      expect(new Set(await nicenessOfGroup(pid))).toEqual(new Set([AS_ROOT ? 0 : 10]));
    } finally {
      await state.provider.destroy(machine.id);
    }
  });
});

describe('the same machine without a sandbox (control)', () => {
  const { canary, state, probe } = probeSetup('none');

  it('is what the provider says: unsandboxed, by the operator’s choice', () => {
    expect(state.provider.isolation).toBe('none');
    expect(state.provider.allowsUnsandboxedCode).toBe(true);
  });

  it('still gets only the allow-listed environment', async () => {
    await probe((report) => {
      expectAllowListedEnv(report.env, canary);
      expect(report.env.WORK_DIR).toBe(join(state.dir, report.env.SESSION_ID, 'work'));
    });
  });

  it("connects to the host's loopback: the listener of this test, Postgres and Redis", async () => {
    await probe(async (report, machine) => {
      expect(report.connects).toEqual([state.listener.target, ...HOST_SERVICES].map((target) => ({ target, ok: true })));
      expect(state.listener.connections()).toBeGreaterThan(0);
      expect(machine.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect((await state.provider.findBySession(machine.sessionId))?.url).toBe(machine.url);
    });
  });

  it(`sees the host's processes and reads the repo root and another machine's files${AS_ROOT ? `, as uid ${MACHINE_UID}` : ''}`, async () => {
    await probe((report) => {
      expect(report.processes.map((p) => p.pid)).toContain(process.pid);
      const readable = report.reads.filter((r) => r.ok).map((r) => r.path);
      expect(readable).toEqual(expect.arrayContaining([report.reads[1].path, state.otherMachineFile]));
      if (AS_ROOT) expect(report.uid).toBe(MACHINE_UID);
    });
  });
});

describe('MACHINE_SANDBOX', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vp-sandbox-choice-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('bubblewrap: the provider refuses to start without a working bwrap, in one line naming the setting', () => {
    const start = () => new LocalMachineProvider({ dir, sandbox: 'bubblewrap', bubblewrap: '/nonexistent/bwrap' });
    expect(start).toThrow(/^MACHINE_SANDBOX=bubblewrap, but bubblewrap cannot run machines here: .*MACHINE_SANDBOX=none/);
    expect(start).not.toThrow(/\n/);
  });

  it('auto: bubblewrap when it works, else none (not allowed to run config files), with the reason', () => {
    expect(new LocalMachineProvider({ dir }).isolation).toBe('sandbox');
    const without = new LocalMachineProvider({ dir, sandbox: 'auto', bubblewrap: '/nonexistent/bwrap' });
    expect(without).toMatchObject({ isolation: 'none', allowsUnsandboxedCode: false });
    expect(without.sandboxProblem).toContain('/nonexistent/bwrap');
    const broken = new LocalMachineProvider({ dir, sandbox: 'auto', bubblewrap: '/bin/false' });
    expect(broken).toMatchObject({ isolation: 'none', sandboxProblem: expect.stringContaining('exit 1') });
  });

  it('none: never probes', () => {
    const probe = jest.fn(() => 'broken');
    expect(chooseSandbox('none', probe)).toEqual({ isolation: 'none', problem: null });
    expect(probe).not.toHaveBeenCalled();
  });
});

describe('the real preview container in the sandbox', () => {
  const TOKEN = `machine-token-${randomBytes(8).toString('hex')}`;
  const FILES = [
    { path: 'index.html', content: '<!doctype html><div id=root></div><script type=module src=/src/main.ts></script>' },
    { path: 'src/main.ts', content: 'document.body.append("ok")' },
  ];
  let api: Server;
  const apiRequests: { url?: string; authorization?: string }[] = [];
  let dir: string;
  let provider: LocalMachineProvider;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vp-sandbox-container-'));
    // The api as a sandboxed machine reaches it: on a Unix socket, its files and nothing else.
    api = createServer((req: IncomingMessage, res) => {
      apiRequests.push({ url: req.url, authorization: req.headers.authorization });
      const files = /^\/v1\/machines\/[0-9a-f-]{36}\/files$/.test(req.url ?? '') && req.method === 'GET';
      res.writeHead(files ? 200 : 404, { 'content-type': 'application/json' });
      res.end(files ? JSON.stringify({ files: FILES }) : '{}');
    });
    const apiSocket = join(dir, 'api', 'api.sock');
    await mkdir(join(dir, 'api'), { mode: 0o755 });
    await listenOnSocket(api, apiSocket);
    provider = new LocalMachineProvider({ dir, sandbox: 'bubblewrap', apiSocket });
  });

  afterAll(async () => {
    for (const machine of (await provider?.list()) ?? []) await provider.destroy(machine.id);
    await new Promise((done) => api?.close(done));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('loads its files from the api on its socket, starts Vite, and reports /health 200 with devServer ok on its own socket', async () => {
    const sessionId = randomUUID();
    expect(provider.machineApiUrl).toBe('http://unix:/run/vp-api/api.sock:');
    const filesUrl = `${provider.machineApiUrl}/v1/machines/${sessionId}/files`;
    const env = { PROJECT_ID: randomUUID(), TEMPLATE_TYPE: 'vanilla-ts', FILES_URL: filesUrl, MACHINE_TOKEN: TOKEN };
    const machine = await provider.create({ ...specOf(sessionId, env), templateType: 'vanilla-ts' });
    try {
      await provider.waitStarted(machine, 30_000);
      expect(unixSocketOf(machine.url)?.socketPath).toBe(join(dir, sessionId, 'http.sock'));
      const health = await waitFor(`/health of machine ${machine.id} to answer 200 with devServer ok`, 90_000, async () => {
        const res = await requestText(`${machine.url}/health`, { signal: AbortSignal.timeout(5_000) });
        const body = JSON.parse(res.body) as { devServer?: string };
        return res.status === 200 && body.devServer === 'ok' ? body : undefined;
      });
      expect(health).toMatchObject({ status: 'ok', devServer: 'ok', data: 'ok', sessionId });
      expect(apiRequests).toContainEqual({ url: `/v1/machines/${sessionId}/files`, authorization: `Bearer ${TOKEN}` });
      const lines = await processLinesOf(sessionId);
      expect(lines.find((l) => l.pgid === l.pid)?.args).toMatch(/^\S*bwrap /);
      expect(lines.some((l) => l.args.includes(`${SANDBOX_APP_DIR}/dist/apps/preview-container/src/main.js`))).toBe(true);
    } catch (error) {
      const log = await readFile(join(dir, sessionId, 'container.log'), 'utf8').catch(() => '(no log)');
      throw new Error(`${(error as Error).message}\nThe machine's log:\n${log}`);
    } finally {
      await provider.destroy(machine.id);
    }
    expect(await processLinesOf(sessionId)).toEqual([]);
  }, 150_000);
});
