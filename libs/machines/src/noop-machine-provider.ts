import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { TimeoutError, sleep, routeIdOfHost } from '@velocity/contracts';
import { sendJson } from '@velocity/runtime';
import type { Machine, MachineProvider, MachineSpec } from './machine-provider';

/**
 * FOR BENCHMARKS ONLY (`MACHINE_PROVIDER=noop`, refused when NODE_ENV=production).
 *
 * A provider whose machines cost nothing: `create` records the machine in memory
 * and it is `started` at once. Every machine of the provider is served by ONE
 * tiny HTTP server in the provider's process (started on the first create), which
 * answers any request to a live machine's preview origin (`<sessionId>.<domain>`)
 * with 200 and an HTML page that loads `/@vite/client`, so the provisioner's
 * verification still runs for real through the edge. Nothing else is faked: the
 * row, the queue, the events and the routing path are the real ones.
 *
 * Machines live in the memory of the process that made them: another process
 * (cleanup) sees none of them and destroying them there is a no-op; they go
 * when their process exits. A spec whose env has `START_DELAY_MS` starts that
 * much later (the provider contract asks for a slow start).
 */
export class NoopMachineProvider implements MachineProvider {
  readonly name = 'noop';
  /** It runs no project code: nothing to contain. */
  readonly isolation = 'vm';
  private readonly machines = new Map<string, { machine: Machine; startedAt: number }>();
  private server?: Promise<{ server: Server; url: string }>;

  constructor(private readonly options: { host?: string } = {}) {}

  async create(spec: MachineSpec): Promise<Machine> {
    const { url } = await this.listening();
    const existing = this.machines.get(spec.sessionId);
    if (existing) return existing.machine;
    const delay = Number(spec.env.START_DELAY_MS ?? 0) || 0;
    const machine: Machine = { id: `noop-${spec.sessionId}`, sessionId: spec.sessionId, state: delay > 0 ? 'starting' : 'started', url };
    this.machines.set(spec.sessionId, { machine, startedAt: Date.now() + delay });
    return machine;
  }

  async waitStarted(machine: Machine, timeoutMs: number, signal?: AbortSignal): Promise<Machine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const entry = this.machines.get(machine.sessionId);
      if (!entry || entry.machine.id !== machine.id) throw new Error(`Machine ${machine.id} was destroyed while starting`);
      if (entry.startedAt <= Date.now()) {
        entry.machine = { ...entry.machine, state: 'started' };
        return entry.machine;
      }
      if (Date.now() >= deadline) throw new TimeoutError(`machine ${machine.id} to start`, timeoutMs);
      await sleep(Math.max(1, Math.min(25, deadline - Date.now())), signal);
    }
  }

  async get(machineId: string): Promise<Machine | null> {
    return this.machines.get(machineId.replace(/^noop-/, ''))?.machine ?? null;
  }

  async findBySession(sessionId: string): Promise<Machine | null> {
    return this.machines.get(sessionId)?.machine ?? null;
  }

  async destroy(machineId: string): Promise<void> {
    this.machines.delete(machineId.replace(/^noop-/, ''));
  }

  async list(): Promise<Machine[]> {
    return [...this.machines.values()].map((entry) => entry.machine);
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    const { server: http } = await server;
    http.closeAllConnections();
    await new Promise<void>((resolve) => http.close(() => resolve()));
  }

  /** The one server of this provider, started on first use. */
  private listening(): Promise<{ server: Server; url: string }> {
    this.server ??= new Promise((resolve, reject) => {
      const host = this.options.host ?? '127.0.0.1';
      const server = createServer((req, res) => {
        const path = (req.url ?? '/').split('?')[0];
        if (path === '/health') return void res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
        const sessionId = routeIdOfHost(req.headers.host);
        if (!sessionId || !this.machines.has(sessionId)) {
          return sendJson(res, 404, { error: 'No such machine', sessionId });
        }
        res
          .writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
          .end(
            `<!doctype html><html><head><script type="module" src="/@vite/client"></script></head>` +
              `<body><div id="root"></div></body></html>`,
          );
      });
      server.keepAliveTimeout = 60_000;
      server.once('error', reject);
      server.listen(0, host, () => {
        const { port } = server.address() as AddressInfo;
        resolve({ server, url: `http://${host}:${port}` });
      });
    });
    return this.server;
  }
}
