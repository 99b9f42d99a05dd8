/**
 * A local test double of the Fly Machines REST API: a real HTTP server (node:http)
 * that models the part FlyMachineProvider uses. It runs no containers; it only
 * keeps machines and their states the way the API reports them.
 *
 * Shapes follow /work/shared/fly-machines-api.md and Fly's published docs:
 * - Machine fields and the create response (id of 14 hex chars, `state: "created"`
 *   on create, `instance_id`, IPv6 `private_ip`, config echoed, `created_at`,
 *   `updated_at`, `events`): superfly/docs reference/machines/_machines_create_resp.erb.
 * - List filters `include_deleted`, `region` and `metadata.{key}` ("Filter by metadata
 *   key-value pair ... `GET /v1/apps/my-app-name/machines?metadata.foo=bar`"):
 *   superfly/docs machines/api/machines-resource.html.markerb, "List Machines".
 * - wait: `state` one of started|stopped|destroyed (default started), `timeout` in
 *   seconds (default 60), `instance_id` "required when waiting for Machine to be in
 *   `stopped` state"; responses 200 `{"ok": true}`, 400 Bad Request, 408 Request
 *   Timeout (same page, "Wait for a Machine to reach a specified state"). The shared
 *   summary says "400 with ErrorResponse otherwise"; Fly's page lists 408 for the
 *   timeout, so the double answers a timeout with 408 by default and with 400 when
 *   `waitTimeoutStatus: 400` (the provider handles both).
 * - destroy `?force=true` "Force stop the Machine if running"; stop/destroy answer
 *   200 `{"ok": true}` (same page). Mutating a destroyed machine answers 404 "machine
 *   not found" (superfly/flyctl PR #1177), while GET still shows it as `destroyed`.
 * - ErrorResponse `{error, status}`; `status: "insufficient_capacity"` marks a capacity
 *   failure, which reaches clients as 422 (superfly/fly-go flaps/flaps_error.go:
 *   "a proper 422 insufficient_capacity"). 429 for rate limits (shared summary).
 *
 * Assumed (not found in the sources searched, noted in the report):
 * - a duplicate machine `name` in one app answers 409 Conflict with an ErrorResponse
 *   (Fly documents `name` as "Unique name for the Machine"; community.fly.io
 *   "409 Conflict error from Machines API" lists 409 for conflicts on a machine, not
 *   this case); names of destroyed machines are free again;
 * - destroying a running machine without `force` answers 412 `failed_precondition`
 *   (412 Precondition Failed per the same community thread);
 * - with `auto_destroy: true`, a machine that stops is destroyed.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type FlyState =
  | 'created'
  | 'starting'
  | 'started'
  | 'stopping'
  | 'stopped'
  | 'suspended'
  | 'replacing'
  | 'destroying'
  | 'destroyed'
  | 'failed'
  | 'launch_failed';

export interface DoubleMachine {
  id: string;
  name: string;
  state: FlyState;
  region: string;
  instance_id: string;
  private_ip: string;
  config: Record<string, any>;
  image_ref: Record<string, unknown>;
  checks?: Array<{ name: string; status: 'passing' | 'warning' | 'critical'; output: string; updated_at: string }>;
  events: Array<{ id: string; type: string; status: string; source: string; timestamp: number }>;
  created_at: string;
  updated_at: string;
}

export interface RecordedRequest {
  method: string;
  /** Path under the API base, without the query: `/apps/my-app/machines`. */
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  body: any;
  /** Status the double answered with (set once answered). */
  status?: number;
}

export interface FaultFilter {
  method?: string;
  /** Substring of, or pattern for, the path under the API base. */
  path?: string | RegExp;
  /** Extra response headers, e.g. `{ 'retry-after': '1' }`. */
  headers?: Record<string, string>;
  /** The request is carried out first, then its answer replaced by the fault's (a 5xx after the work was done, a lost answer). */
  afterHandling?: boolean;
}

export interface FlyApiDoubleOptions {
  /** The bearer token the double accepts. */
  token?: string;
  /** Apps that exist; any other app name answers 404. */
  apps?: string[];
  /** Region of machines created without one. */
  defaultRegion?: string;
  /** How long from `starting` to `started`; a function can read the machine's config (e.g. env). */
  startDelayMs?: number | ((config: Record<string, any>) => number);
  /** How long after `started` the configured checks turn from critical to passing. */
  healthyDelayMs?: number;
  /** Create requests are held this long before they are handled. */
  hangCreateMs?: number;
  /** Status of a wait that timed out: 408 (Fly's docs page) or 400 (the shared summary). */
  waitTimeoutStatus?: 400 | 408;
  /** How long one second of a wait's `timeout` lasts here (1000 ms): specs shorten it so a timed-out wait costs less. */
  waitSecondMs?: number;
}

interface Fault {
  remaining: number;
  status: number;
  body: unknown;
  filter: FaultFilter;
}

interface Waiter {
  machine: DoubleMachine;
  state: string;
  settle: (status: number, body: unknown) => void;
}

class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly flyStatus?: string) {
    super(message);
  }
}

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const WAITABLE = new Set(['started', 'stopped', 'destroyed']);

export class FlyApiDouble {
  /** Base URL with the version, as FlyMachineProvider's `apiUrl` takes it. */
  url = '';
  readonly token: string;
  readonly requests: RecordedRequest[] = [];
  defaultRegion: string;
  startDelayMs: number | ((config: Record<string, any>) => number);
  healthyDelayMs: number;
  hangCreateMs: number;
  waitTimeoutStatus: 400 | 408;
  readonly waitSecondMs: number;

  private readonly apps = new Map<string, Map<string, DoubleMachine>>();
  private readonly faults: Fault[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly waiters = new Set<Waiter>();
  private readonly server: Server;

  private constructor(options: FlyApiDoubleOptions) {
    this.token = options.token ?? 'fly-double-token';
    for (const app of options.apps ?? ['vp-previews']) this.apps.set(app, new Map());
    this.defaultRegion = options.defaultRegion ?? 'ord';
    this.startDelayMs = options.startDelayMs ?? 50;
    this.healthyDelayMs = options.healthyDelayMs ?? 0;
    this.hangCreateMs = options.hangCreateMs ?? 0;
    this.waitTimeoutStatus = options.waitTimeoutStatus ?? 408;
    this.waitSecondMs = options.waitSecondMs ?? 1000;
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((error) => this.send(res, 500, { error: `double: ${(error as Error).message}` }));
    });
  }

  static async start(options: FlyApiDoubleOptions = {}): Promise<FlyApiDouble> {
    const double = new FlyApiDouble(options);
    await new Promise<void>((resolve, reject) => {
      double.server.once('error', reject);
      double.server.listen(0, '127.0.0.1', () => resolve());
    });
    const { port } = double.server.address() as AddressInfo;
    double.url = `http://127.0.0.1:${port}/v1`;
    return double;
  }

  /** Answers the next `n` requests that match `filter` with `status` and `body` (an ErrorResponse by default). */
  failNext(n: number, status: number, body: unknown = { error: `injected ${status}` }, filter: FaultFilter = {}): void {
    this.faults.push({ remaining: n, status, body, filter });
  }

  /** Every machine of an app, destroyed ones included. */
  machines(app: string): DoubleMachine[] {
    return [...(this.apps.get(app)?.values() ?? [])];
  }

  /** Moves a machine to a state, as Fly would on its own (a crash: `failed`). */
  setState(app: string, machineId: string, state: FlyState): void {
    const machine = this.apps.get(app)?.get(machineId);
    if (!machine) throw new Error(`double: no machine ${machineId} in ${app}`);
    this.transition(machine, state);
  }

  /** Requests matching a method and a path pattern. */
  requestsTo(method: string, path: string | RegExp): RecordedRequest[] {
    return this.requests.filter((r) => r.method === method && matches(r.path, path));
  }

  async close(): Promise<void> {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    for (const waiter of this.waiters) waiter.settle(503, { error: 'double closing' });
    this.waiters.clear();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---- HTTP ----------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://double');
    const path = url.pathname.replace(/^\/v1(?=\/)/, '');
    const raw = await readBody(req);
    const recorded: RecordedRequest = { method: req.method ?? 'GET', path, query: url.searchParams, headers: req.headers, body: undefined };
    this.requests.push(recorded);
    res.on('finish', () => (recorded.status = res.statusCode));
    try {
      recorded.body = raw ? JSON.parse(raw) : undefined;
    } catch {
      return this.send(res, 400, { error: 'invalid JSON body' });
    }
    if (!url.pathname.startsWith('/v1/')) return this.send(res, 404, { error: 'not found' });
    if (req.headers.authorization !== `Bearer ${this.token}`) {
      return this.send(res, 401, { error: 'You must be authenticated to view this.' });
    }
    const fault = this.faults.find(
      (f) => f.remaining > 0 && (!f.filter.method || f.filter.method === recorded.method) && (!f.filter.path || matches(path, f.filter.path)),
    );
    if (fault) {
      fault.remaining--;
      if (fault.filter.afterHandling) await this.route(recorded, res).catch(() => undefined);
      return this.send(res, fault.status, fault.body, fault.filter.headers);
    }
    try {
      const out = await this.route(recorded, res);
      if (out) this.send(res, out.status, out.body);
    } catch (error) {
      if (!(error instanceof HttpError)) throw error;
      this.send(res, error.status, { error: error.message, ...(error.flyStatus ? { status: error.flyStatus } : {}) });
    }
  }

  /** Returns the answer, or null when the handler answers later itself (wait). */
  private async route(r: RecordedRequest, res: ServerResponse): Promise<{ status: number; body?: unknown } | null> {
    const parts = r.path.split('/').filter(Boolean).map(decodeURIComponent);
    if (parts[0] !== 'apps' || parts.length < 3 || parts[2] !== 'machines') throw new HttpError(404, 'not found');
    const app = this.apps.get(parts[1]);
    if (!app) throw new HttpError(404, `app not found: ${parts[1]}`);
    const [, appName, , id, action, key] = parts;

    if (parts.length === 3) {
      if (r.method === 'GET') return { status: 200, body: this.list(app, r.query) };
      if (r.method === 'POST') return { status: 200, body: await this.create(appName, app, r.body) };
      throw new HttpError(405, 'method not allowed');
    }
    const machine = app.get(id);
    if (!machine) throw new HttpError(404, 'machine not found');
    const gone = machine.state === 'destroyed';

    if (parts.length === 4) {
      if (r.method === 'GET') return { status: 200, body: machine };
      if (r.method === 'DELETE') {
        if (gone) throw new HttpError(404, 'machine not found');
        return { status: 200, body: this.destroy(machine, r.query.get('force') === 'true') };
      }
      throw new HttpError(405, 'method not allowed');
    }
    if (action === 'wait' && r.method === 'GET' && parts.length === 5) {
      this.wait(machine, r.query, res);
      return null;
    }
    if (gone) throw new HttpError(404, 'machine not found');
    if (action === 'stop' && r.method === 'POST' && parts.length === 5) return { status: 200, body: this.stop(machine) };
    if (action === 'start' && r.method === 'POST' && parts.length === 5) return { status: 200, body: this.start(machine) };
    if (action === 'metadata') {
      const metadata: Record<string, string> = (machine.config.metadata ??= {});
      if (r.method === 'GET' && parts.length === 5) return { status: 200, body: metadata };
      if (r.method === 'POST' && key !== undefined && parts.length === 6) {
        if (typeof r.body?.value !== 'string') throw new HttpError(400, 'value must be a string');
        metadata[key] = r.body.value;
        this.touch(machine);
        return { status: 204 };
      }
      if (r.method === 'DELETE' && key !== undefined && parts.length === 6) {
        delete metadata[key];
        this.touch(machine);
        return { status: 204 };
      }
    }
    throw new HttpError(404, 'not found');
  }

  private list(app: Map<string, DoubleMachine>, query: URLSearchParams): DoubleMachine[] {
    const includeDeleted = query.get('include_deleted') === 'true';
    const region = query.get('region');
    const metadata = [...query.entries()].filter(([k]) => k.startsWith('metadata.')).map(([k, v]) => [k.slice(9), v] as const);
    return [...app.values()].filter(
      (m) =>
        (includeDeleted || m.state !== 'destroyed') &&
        (!region || m.region === region) &&
        metadata.every(([k, v]) => m.config.metadata?.[k] === v),
    );
  }

  private async create(appName: string, app: Map<string, DoubleMachine>, body: any): Promise<DoubleMachine> {
    if (!body || typeof body !== 'object' || typeof body.config?.image !== 'string' || !body.config.image) {
      throw new HttpError(400, 'config.image is required');
    }
    if (body.name !== undefined && (typeof body.name !== 'string' || !/^[a-z0-9-]{1,63}$/.test(body.name))) {
      throw new HttpError(400, 'name must be up to 63 lowercase letters, digits and dashes');
    }
    if (this.hangCreateMs > 0) await this.delay(this.hangCreateMs);
    const name: string = body.name ?? `${pick(['aged', 'bold', 'calm'])}-${pick(['thunder', 'river', 'leaf'])}-${1000 + Math.floor(Math.random() * 9000)}`;
    if ([...app.values()].some((m) => m.name === name && m.state !== 'destroyed')) {
      throw new HttpError(409, `machine name "${name}" is already in use in app ${appName}`);
    }
    const now = new Date();
    const config = JSON.parse(JSON.stringify(body.config));
    config.guest ??= { cpu_kind: 'shared', cpus: 1, memory_mb: 256 };
    const machine: DoubleMachine = {
      id: randomBytes(7).toString('hex'),
      name,
      state: 'created',
      region: body.region ?? this.defaultRegion,
      instance_id: ulid(),
      private_ip: `fdaa:0:1:a7b:${hex4()}:${hex4()}:${hex4()}:2`,
      config,
      image_ref: imageRef(config.image),
      events: [],
      created_at: iso(now),
      updated_at: iso(now),
    };
    this.addEvent(machine, 'launch', 'created');
    app.set(machine.id, machine);
    if (!body.skip_launch) this.boot(machine);
    return machine;
  }

  private wait(machine: DoubleMachine, query: URLSearchParams, res: ServerResponse): void {
    const state = query.get('state') ?? 'started';
    const timeoutText = query.get('timeout') ?? '60';
    const seconds = Number(timeoutText);
    if (!WAITABLE.has(state)) return this.send(res, 400, { error: `invalid state "${state}": must be started, stopped or destroyed` });
    if (!/^\d+$/.test(timeoutText) || seconds < 1) return this.send(res, 400, { error: `invalid timeout "${timeoutText}"` });
    if (state === 'stopped' && !query.get('instance_id')) {
      return this.send(res, 400, { error: 'instance_id is required when waiting for the stopped state' });
    }
    if (machine.state === state) return this.send(res, 200, { ok: true });
    const unreachable = this.unreachable(machine, state);
    if (unreachable) return this.send(res, 400, { error: unreachable });

    let timer: NodeJS.Timeout | undefined = undefined;
    const waiter: Waiter = {
      machine,
      state,
      settle: (status, body) => {
        this.waiters.delete(waiter);
        if (timer) this.clear(timer);
        if (!res.writableEnded && !res.destroyed) this.send(res, status, body);
      },
    };
    this.waiters.add(waiter);
    timer = this.after(Math.min(seconds, 60) * this.waitSecondMs, () =>
      waiter.settle(this.waitTimeoutStatus, { error: `deadline_exceeded: machine ${machine.id} did not reach ${state} in ${seconds}s`, status: 'unknown' }),
    );
    // The client gave up (or the answer went out): forget the waiter.
    res.once('close', () => {
      this.waiters.delete(waiter);
      if (timer) this.clear(timer);
    });
  }

  private stop(machine: DoubleMachine): { ok: true } {
    if (['created', 'starting', 'started', 'replacing'].includes(machine.state)) {
      this.transition(machine, 'stopping');
      this.after(10, () => this.transition(machine, 'stopped'));
    }
    return { ok: true };
  }

  private start(machine: DoubleMachine): { previous_state: string } {
    const previous = machine.state;
    if (['created', 'stopped', 'suspended', 'failed'].includes(previous)) this.boot(machine);
    return { previous_state: previous };
  }

  private destroy(machine: DoubleMachine, force: boolean): { ok: true } {
    if (!force && ['starting', 'started', 'stopping', 'replacing'].includes(machine.state)) {
      throw new HttpError(412, 'failed_precondition: unable to destroy machine, not currently stopped or suspended');
    }
    this.transition(machine, 'destroyed');
    return { ok: true };
  }

  // ---- state ---------------------------------------------------------------

  private boot(machine: DoubleMachine): void {
    // Boots from the state it was asked in; anything that moved the machine meanwhile (a crash, a destroy) wins.
    const from = machine.state;
    const events = machine.events.length;
    this.after(0, () => {
      if (machine.state !== from || machine.events.length !== events) return;
      this.transition(machine, 'starting');
      const delay = typeof this.startDelayMs === 'function' ? this.startDelayMs(machine.config) : this.startDelayMs;
      this.after(Math.max(0, delay), () => {
        if (machine.state !== 'starting') return;
        this.transition(machine, 'started');
        const checks = Object.keys(machine.config.checks ?? {});
        if (checks.length === 0) return;
        const set = (status: 'passing' | 'critical', output: string) => {
          machine.checks = checks.map((name) => ({ name, status, output, updated_at: iso(new Date()) }));
        };
        set('critical', 'waiting for the first check');
        this.after(this.healthyDelayMs, () => {
          if (machine.state === 'started') set('passing', 'HTTP GET /health: 200 OK');
        });
      });
    });
  }

  private transition(machine: DoubleMachine, state: FlyState): void {
    machine.state = state;
    if (state !== 'started') delete machine.checks;
    this.touch(machine);
    this.addEvent(machine, eventType(state), state);
    for (const waiter of [...this.waiters]) {
      if (waiter.machine !== machine) continue;
      if (waiter.state === state) waiter.settle(200, { ok: true });
      else {
        const unreachable = this.unreachable(machine, waiter.state);
        if (unreachable) waiter.settle(400, { error: unreachable });
      }
    }
    if (state === 'stopped' && machine.config.auto_destroy === true) this.after(0, () => this.transition(machine, 'destroyed'));
  }

  /** Why a machine in its current state can no longer reach `state`, if it cannot. */
  private unreachable(machine: DoubleMachine, state: string): string | null {
    if (machine.state === 'destroyed' && state !== 'destroyed') return `machine ${machine.id} is destroyed`;
    if ((machine.state === 'failed' || machine.state === 'launch_failed') && state === 'started') return `machine ${machine.id} failed to start`;
    return null;
  }

  private touch(machine: DoubleMachine): void {
    machine.updated_at = iso(new Date());
  }

  private addEvent(machine: DoubleMachine, type: string, status: string): void {
    machine.events.unshift({ id: ulid(), type, status, source: 'flyd', timestamp: Date.now() });
  }

  private after(ms: number, fn: () => void): NodeJS.Timeout {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, ms);
    this.timers.add(timer);
    return timer;
  }

  private clear(timer: NodeJS.Timeout): void {
    clearTimeout(timer);
    this.timers.delete(timer);
  }

  private delay(ms: number): Promise<void> {
    return new Promise((resolve) => this.after(ms, resolve));
  }

  private send(res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}): void {
    if (res.headersSent) return;
    if (status === 204 || body === undefined) {
      res.writeHead(status, headers).end();
      return;
    }
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers }).end(JSON.stringify(body));
  }
}

function matches(path: string, pattern: string | RegExp): boolean {
  return typeof pattern === 'string' ? path.includes(pattern) : pattern.test(path);
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function eventType(state: FlyState): string {
  if (state === 'starting' || state === 'started') return 'start';
  if (state === 'stopping' || state === 'stopped') return 'stop';
  if (state === 'destroying' || state === 'destroyed') return 'destroy';
  return state === 'failed' ? 'exit' : 'update';
}

/** Fly's timestamps: RFC 3339 in UTC without fractions, `2023-11-08T01:52:30Z`. */
function iso(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function ulid(): string {
  const bytes = randomBytes(26);
  return Array.from(bytes, (b) => CROCKFORD[b % 32]).join('');
}

function hex4(): string {
  return randomBytes(2).toString('hex').replace(/^0+(?=.)/, '');
}

function pick<T>(items: T[]): T {
  return items[Math.floor(Math.random() * items.length)];
}

function imageRef(image: string): Record<string, unknown> {
  const match = image.match(/^(?:([^/]+\.[^/]+|localhost(?::\d+)?)\/)?([^:@]+)(?::([^@]+))?(?:@(.+))?$/);
  return {
    registry: match?.[1] ?? 'registry-1.docker.io',
    repository: match?.[2] ?? image,
    tag: match?.[3] ?? 'latest',
    digest: match?.[4] ?? `sha256:${randomBytes(32).toString('hex')}`,
    labels: {},
  };
}
