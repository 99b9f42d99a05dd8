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
 *
 * With a `runMachine` runner, a booted machine is a real process (the runner's):
 * - Its environment is `config.env` plus the variables Fly sets in every machine
 *   (superfly/docs machines/runtime-environment: FLY_APP_NAME, FLY_MACHINE_ID,
 *   FLY_ALLOC_ID "same as the FLY_MACHINE_ID", FLY_REGION, FLY_PUBLIC_IP,
 *   FLY_IMAGE_REF, FLY_MACHINE_VERSION "under the name Instance ID", FLY_PRIVATE_IP,
 *   FLY_PROCESS_GROUP "if any", FLY_VM_MEMORY_MB).
 * - It is `started` once the process runs; a process that exits moves it to
 *   `stopped` (an `exit` event with its exit code). Stop and destroy send
 *   `stop_config.signal` (SIGTERM), then SIGKILL after `stop_config.timeout`
 *   (5 s, Fly's default kill timeout); destroy passes through `destroying`.
 * - Its checks are real probes of the process: top-level `config.checks` (named by
 *   their keys) and every `config.services[].checks` entry, reported in `checks`.
 *   Fly names service checks `servicecheck-<two-digit index>-<type>-<internal port>`
 *   (`servicecheck-00-http-8080`, as Fly's logs and `fly checks list` show them); the
 *   index counts the checks of every service in order (assumed for several services).
 *   Durations are Go durations (`"15s"`) or nanoseconds (machines-resource, "config
 *   object": `interval`, `timeout`, `grace_period` "in nanoseconds"); an http check
 *   passes on a 2xx (reference/health-checks: "expecting a 2xx HTTP response").
 *   Defaults where Fly publishes none: interval 15 s, timeout 2 s, no grace period,
 *   GET `/`. Every port of the config (internal ports, check ports) is the process's
 *   one listening port: a machine here listens on one port of its own.
 * - Only service checks decide whether Fly's proxy routes to the machine; top-level
 *   checks are informational (reference/health-checks, "Top-level checks").
 *   `servesRequests` and `routableMachines` answer that for FlyProxyDouble.
 * Not modelled: restart policies (a process that exits stays stopped), `suspend`,
 * cordons and `skip_service_registration`, https checks (probed as http).
 */
import { randomBytes } from 'node:crypto';
import { constants as osConstants } from 'node:os';
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo } from 'node:net';

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

export type CheckStatus = 'passing' | 'warning' | 'critical';

export interface DoubleMachine {
  id: string;
  name: string;
  state: FlyState;
  region: string;
  instance_id: string;
  private_ip: string;
  config: Record<string, any>;
  image_ref: Record<string, unknown>;
  checks?: Array<{ name: string; status: CheckStatus; output: string; updated_at: string }>;
  events: Array<{ id: string; type: string; status: string; source: string; timestamp: number; request?: Record<string, unknown> }>;
  created_at: string;
  updated_at: string;
}

/** Starts a machine's process: what Fly's init does in the VM with the image's command. */
export interface MachineRunner {
  start(machine: DoubleMachine, env: Record<string, string>): Promise<RunningMachine>;
}

export interface RunningMachine {
  /** Where the process listens (its one port stands for every port of the machine's config). */
  host: string;
  port: number;
  /** Resolves with the exit code (null when a signal ended it) once the process has exited. */
  exited: Promise<number | null>;
  /** Sends `signal` (SIGTERM by default) to the process; `exited` says when it has ended. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** The last lines the process wrote, for failure messages. */
  output?(): string;
}

/** A machine's process while it runs, with the probes of its checks. */
interface MachineProcess {
  running: RunningMachine;
  ending?: Promise<void>;
}

/** One check of a machine's config, as the double probes it. */
interface CheckSpec {
  name: string;
  type: string;
  service: boolean;
  method: string;
  path: string;
  headers: Record<string, string[]>;
  intervalMs: number;
  timeoutMs: number;
  gracePeriodMs: number;
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
  /** Runs each booted machine as a real process; without it machines only change state. */
  runMachine?: MachineRunner;
  /** Multiplies checks' `interval` and `grace_period` (1): Fly's 15 s are long for a test, 0.01 makes them 150 ms. */
  checkIntervalScale?: number;
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
/** Fly's default kill timeout: how long a stop waits for the process before SIGKILL. */
const DEFAULT_STOP_TIMEOUT_MS = 5_000;
/** The shortest probe interval a scaled check gets, so a tiny scale cannot busy-loop. */
const MIN_CHECK_INTERVAL_MS = 10;

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
  readonly checkIntervalScale: number;

  private readonly runMachine?: MachineRunner;
  private readonly apps = new Map<string, Map<string, DoubleMachine>>();
  private readonly appOf = new Map<DoubleMachine, string>();
  private readonly processes = new Map<DoubleMachine, MachineProcess>();
  private readonly launches = new Set<Promise<void>>();
  private closing = false;
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
    this.runMachine = options.runMachine;
    this.checkIntervalScale = options.checkIntervalScale ?? 1;
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

  /** Where a machine's process listens while it runs; null without one. */
  endpointOf(app: string, machineId: string): { host: string; port: number } | null {
    const machine = this.apps.get(app)?.get(machineId);
    const running = machine && this.processes.get(machine)?.running;
    return running ? { host: running.host, port: running.port } : null;
  }

  /** The last lines a machine's running process wrote ('' without one). */
  outputOf(app: string, machineId: string): string {
    const machine = this.apps.get(app)?.get(machineId);
    return (machine && this.processes.get(machine)?.running.output?.()) ?? '';
  }

  /**
   * Whether Fly's proxy would send a request to the machine: it is `started`, its
   * process runs, it has a service, and every service check passes.
   */
  servesRequests(app: string, machineId: string): boolean {
    const machine = this.apps.get(app)?.get(machineId);
    if (!machine || machine.state !== 'started' || !this.processes.has(machine)) return false;
    if (!Array.isArray(machine.config.services) || machine.config.services.length === 0) return false;
    const serviceChecks = checksOf(machine.config).filter((check) => check.service);
    return serviceChecks.every((check) => machine.checks?.some((c) => c.name === check.name && c.status === 'passing'));
  }

  /** The machines of an app that Fly's proxy may route a request to now. */
  routableMachines(app: string): DoubleMachine[] {
    return this.machines(app).filter((m) => this.servesRequests(app, m.id));
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all([...this.launches]);
    await Promise.all([...this.processes.entries()].map(([machine, machineProcess]) => this.endProcess(machineProcess, ...this.stopSettings(machine))));
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
    if (action === 'stop' && r.method === 'POST' && parts.length === 5) return { status: 200, body: this.stop(machine, r.body) };
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
    this.appOf.set(machine, appName);
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

  private stop(machine: DoubleMachine, body?: { signal?: unknown; timeout?: unknown }): { ok: true } {
    if (['created', 'starting', 'started', 'replacing'].includes(machine.state)) {
      this.transition(machine, 'stopping');
      const machineProcess = this.processes.get(machine);
      // The process's exit moves the machine to stopped; without one it is stopped at once.
      if (machineProcess) void this.endProcess(machineProcess, ...this.stopSettings(machine, body));
      else this.after(10, () => this.transition(machine, 'stopped'));
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
    const machineProcess = this.processes.get(machine);
    if (machineProcess) {
      // Destroyed once its process has ended (onExit).
      this.transition(machine, 'destroying');
      void this.endProcess(machineProcess, ...this.stopSettings(machine));
    } else this.transition(machine, 'destroyed');
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
        if (this.runMachine) this.track(this.launch(machine, this.runMachine));
        else this.startWithoutProcess(machine);
      });
    });
  }

  /** Without a runner: started at once, its checks critical, then passing after `healthyDelayMs`. */
  private startWithoutProcess(machine: DoubleMachine): void {
    this.transition(machine, 'started');
    const checks = checksOf(machine.config);
    if (checks.length === 0) return;
    const set = (status: CheckStatus, output: string) => {
      machine.checks = checks.map(({ name }) => ({ name, status, output, updated_at: iso(new Date()) }));
    };
    set('critical', 'waiting for the first check');
    this.after(this.healthyDelayMs, () => {
      if (machine.state === 'started') set('passing', 'HTTP GET /health: 200 OK');
    });
  }

  private track(launch: Promise<void>): void {
    this.launches.add(launch);
    void launch.finally(() => this.launches.delete(launch));
  }

  /** Starts the machine's process; `started` once it runs, `failed` when it cannot start. */
  private async launch(machine: DoubleMachine, runner: MachineRunner): Promise<void> {
    let running: RunningMachine;
    try {
      running = await runner.start(machine, this.envOf(machine));
    } catch (error) {
      if (machine.state === 'starting') this.transition(machine, 'failed', { request: { error: (error as Error).message } });
      return;
    }
    const machineProcess: MachineProcess = { running };
    // Stopped, destroyed or closed while it was starting: the process is not wanted.
    if (machine.state !== 'starting' || this.closing) {
      await this.endProcess(machineProcess, ...this.stopSettings(machine));
      return;
    }
    this.processes.set(machine, machineProcess);
    void running.exited.then((code) => this.onExit(machine, machineProcess, code));
    this.transition(machine, 'started');
    this.startChecks(machine, machineProcess);
  }

  /** Fly's variables in every machine, over the machine's own `config.env`. */
  private envOf(machine: DoubleMachine): Record<string, string> {
    const config = machine.config;
    const fly: Record<string, string | undefined> = {
      FLY_APP_NAME: this.appOf.get(machine),
      FLY_MACHINE_ID: machine.id,
      FLY_ALLOC_ID: machine.id,
      FLY_REGION: machine.region,
      FLY_PUBLIC_IP: `2605:4c40:${hex4()}:${hex4()}:0:${hex4()}:${hex4()}:1`,
      FLY_IMAGE_REF: config.image,
      FLY_MACHINE_VERSION: machine.instance_id,
      FLY_PRIVATE_IP: machine.private_ip,
      FLY_PROCESS_GROUP: config.metadata?.fly_process_group,
      FLY_VM_MEMORY_MB: config.guest?.memory_mb === undefined ? undefined : String(config.guest.memory_mb),
    };
    const defined = Object.entries(fly).filter((entry): entry is [string, string] => entry[1] !== undefined);
    return { ...(config.env ?? {}), ...Object.fromEntries(defined) };
  }

  private onExit(machine: DoubleMachine, machineProcess: MachineProcess, code: number | null): void {
    if (this.processes.get(machine) !== machineProcess) return;
    this.processes.delete(machine);
    // -1: ended by a signal (the runner reports no code then).
    const request = { exit_event: { exit_code: code ?? -1, requested_stop: machineProcess.ending !== undefined } };
    if (machine.state === 'destroying') {
      this.addEvent(machine, 'exit', 'stopped', request);
      this.transition(machine, 'destroyed');
    } else if (['starting', 'started', 'stopping', 'replacing'].includes(machine.state)) this.transition(machine, 'stopped', { type: 'exit', request });
  }

  /** The stop signal and how long to wait before SIGKILL: the stop request's, else `stop_config`'s, else Fly's defaults. */
  private stopSettings(machine: DoubleMachine, body?: { signal?: unknown; timeout?: unknown }): [NodeJS.Signals, number] {
    const stopConfig = machine.config.stop_config ?? {};
    const signal = signalOf(body?.signal) ?? signalOf(stopConfig.signal) ?? 'SIGTERM';
    return [signal, durationMs(body?.timeout) ?? durationMs(stopConfig.timeout) ?? DEFAULT_STOP_TIMEOUT_MS];
  }

  /** Sends `signal`, then SIGKILL when the process has not exited within `timeoutMs`; resolves once it has exited. */
  private endProcess(machineProcess: MachineProcess, signal: NodeJS.Signals, timeoutMs: number): Promise<void> {
    machineProcess.ending ??= (async () => {
      const { running } = machineProcess;
      await running.stop(signal).catch(() => undefined);
      let timer: NodeJS.Timeout | undefined;
      const inTime = await Promise.race([
        running.exited.then(() => true),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs))),
      ]);
      clearTimeout(timer);
      if (inTime) return;
      await running.stop('SIGKILL').catch(() => undefined);
      await running.exited;
    })();
    return machineProcess.ending;
  }

  /** Every check starts critical; each is probed after its grace period, then every interval, while the process runs. */
  private startChecks(machine: DoubleMachine, machineProcess: MachineProcess): void {
    const checks = checksOf(machine.config);
    if (checks.length === 0) return;
    machine.checks = checks.map(({ name }) => ({ name, status: 'critical', output: 'waiting for the first check', updated_at: iso(new Date()) }));
    const scaled = (ms: number) => Math.max(MIN_CHECK_INTERVAL_MS, ms * this.checkIntervalScale);
    for (const check of checks) {
      const probe = async () => {
        if (!this.isRunning(machine, machineProcess)) return;
        const result = await probeCheck(check, machineProcess.running);
        if (!this.isRunning(machine, machineProcess)) return;
        this.report(machine, check.name, result);
        this.after(scaled(check.intervalMs), () => void probe());
      };
      this.after(check.gracePeriodMs > 0 ? scaled(check.gracePeriodMs) : 0, () => void probe());
    }
  }

  private isRunning(machine: DoubleMachine, machineProcess: MachineProcess): boolean {
    return !this.closing && machine.state === 'started' && this.processes.get(machine) === machineProcess;
  }

  /** Records a probe's result; `updated_at` moves only when the status changes, as `fly checks list` shows it. */
  private report(machine: DoubleMachine, name: string, result: { status: CheckStatus; output: string }): void {
    const entry = machine.checks?.find((c) => c.name === name);
    if (!entry) return;
    if (entry.status !== result.status) entry.updated_at = iso(new Date());
    entry.status = result.status;
    entry.output = result.output;
  }

  /** `event` overrides the event the change records (its type, what caused it). */
  private transition(machine: DoubleMachine, state: FlyState, event: { type?: string; request?: Record<string, unknown> } = {}): void {
    machine.state = state;
    const machineProcess = this.processes.get(machine);
    // Set from outside (a crash, `setState`): the machine's process does not outlive its running states.
    if (machineProcess && !['started', 'stopping', 'destroying'].includes(state)) void this.endProcess(machineProcess, 'SIGKILL', 0);
    if (state !== 'started') delete machine.checks;
    this.touch(machine);
    this.addEvent(machine, event.type ?? eventType(state), state, event.request);
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

  private addEvent(machine: DoubleMachine, type: string, status: string, request?: Record<string, unknown>): void {
    machine.events.unshift({ id: ulid(), type, status, source: 'flyd', timestamp: Date.now(), ...(request ? { request } : {}) });
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

/**
 * The checks of a machine's config: top-level ones by their keys, then every
 * service's, named as Fly names them (`servicecheck-00-http-8080`).
 */
function checksOf(config: Record<string, any>): CheckSpec[] {
  const topLevel = Object.entries<Record<string, any>>(config.checks ?? {}).map(([name, check]) => checkSpec(name, check, false));
  const services: Array<Record<string, any>> = Array.isArray(config.services) ? config.services : [];
  const serviceChecks = services.flatMap((service) => (Array.isArray(service.checks) ? service.checks : []).map((check: Record<string, any>) => ({ service, check })));
  return [
    ...topLevel,
    ...serviceChecks.map(({ service, check }, index) => {
      const spec = checkSpec('', check, true);
      return { ...spec, name: `servicecheck-${String(index).padStart(2, '0')}-${spec.type}-${check.port ?? service.internal_port}` };
    }),
  ];
}

function checkSpec(name: string, check: Record<string, any>, service: boolean): CheckSpec {
  return {
    name,
    type: check.type ?? (check.path ? 'http' : 'tcp'),
    service,
    method: String(check.method ?? 'GET').toUpperCase(),
    path: check.path ?? '/',
    headers: checkHeaders(check.headers),
    intervalMs: durationMs(check.interval) ?? 15_000,
    timeoutMs: durationMs(check.timeout) ?? 2_000,
    gracePeriodMs: durationMs(check.grace_period) ?? 0,
  };
}

/** A check's headers: the Machines API's `[{name, values}]`, or fly.toml's `{name: value}`. */
function checkHeaders(headers: unknown): Record<string, string[]> {
  if (Array.isArray(headers)) return Object.fromEntries(headers.map((h: { name: string; values?: string[] }) => [h.name, h.values ?? []]));
  if (headers && typeof headers === 'object') return Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, [String(v)]]));
  return {};
}

function probeCheck(check: CheckSpec, running: RunningMachine): Promise<{ status: CheckStatus; output: string }> {
  return check.type === 'http' ? probeHttp(check, running) : probeTcp(check, running);
}

function probeHttp(check: CheckSpec, { host, port }: RunningMachine): Promise<{ status: CheckStatus; output: string }> {
  const what = `HTTP ${check.method} ${check.path}`;
  return new Promise((resolve) => {
    const req = httpRequest({ host, port, method: check.method, path: check.path, headers: check.headers, agent: false }, (res) => {
      res.resume();
      const status = res.statusCode ?? 0;
      resolve({ status: status >= 200 && status < 300 ? 'passing' : 'critical', output: `${what}: ${status} ${res.statusMessage ?? ''}`.trim() });
    });
    req.setTimeout(check.timeoutMs, () => req.destroy(new Error(`timed out after ${check.timeoutMs} ms`)));
    req.on('error', (error) => resolve({ status: 'critical', output: `${what}: ${error.message}` }));
    req.end();
  });
}

function probeTcp(check: CheckSpec, { host, port }: RunningMachine): Promise<{ status: CheckStatus; output: string }> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.setTimeout(check.timeoutMs, () => socket.destroy(new Error(`timed out after ${check.timeoutMs} ms`)));
    socket.once('connect', () => {
      socket.destroy();
      resolve({ status: 'passing', output: `TCP connect ${port}: Success` });
    });
    socket.once('error', (error) => resolve({ status: 'critical', output: `TCP connect ${port}: ${error.message}` }));
  });
}

const DURATION_UNITS_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** A Go duration (`"15s"`, `"1m30s"`, `"500ms"`) or nanoseconds (a number), in ms; undefined when absent or unreadable. */
function durationMs(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return value / 1e6;
  if (typeof value !== 'string' || !/^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(value)) return undefined;
  let total = 0;
  for (const [, amount, , unit] of value.matchAll(/(\d+(\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) total += Number(amount) * DURATION_UNITS_MS[unit];
  return total;
}

function signalOf(value: unknown): NodeJS.Signals | undefined {
  return typeof value === 'string' && value in osConstants.signals ? (value as NodeJS.Signals) : undefined;
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
