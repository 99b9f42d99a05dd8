import { PermanentError, TimeoutError, errorMessage, sleep } from '@velocity/contracts';
import { retry, type RetryOptions } from '@velocity/runtime';
import type { FlyRateLimiter } from './fly-rate-limiter';
import { machineExitError, type Machine, type MachineExit, type MachineProvider, type MachineSpec, type MachineState } from './machine-provider';

/** Port the preview container listens on inside every Fly machine. */
const INTERNAL_PORT = 8080;
/** The container's service check: 200 once it answers its own preview (apps/preview-container/src/server.ts). */
const SERVING_CHECK_PATH = '/serving';
/** Fly's proxy cuts a request after 60 s, so one `wait` call asks for 60 s at most. */
const MAX_WAIT_SECONDS = 60;

export interface FlyMachineProviderOptions {
  /** Machines API base URL, with its version: `https://api.machines.dev/v1` (or `http://_api.internal:4280/v1` inside Fly). */
  apiUrl?: string;
  /** A Fly API token allowed to manage machines of `appName`. */
  token: string;
  /** The Fly app that holds the preview machines. */
  appName: string;
  /** Image of apps/preview-container, in a registry Fly can pull from. */
  image: string;
  /** Region of new machines; Fly picks one when omitted. */
  region?: string;
  /** Limit of each request (a `wait` call gets its own server-side wait on top). Default 15 s. */
  requestTimeoutMs?: number;
  /** Extra attempts after a 429, 5xx, capacity or network failure. Default 3. */
  retries?: number;
  /** First backoff delay between attempts, doubled each time (capped at 5 s), when Fly sends no Retry-After. Default 250 ms. */
  retryBaseDelayMs?: number;
  /** Longest Retry-After honoured; longer ones are cut to this. Default 30 s. */
  maxRetryAfterMs?: number;
  /** Longest server-side wait of one `wait` call, in seconds (1-60). Default 60. */
  maxWaitSeconds?: number;
  /**
   * Address the container listens on. Default `::`: the machine's 6PN private
   * address (`Machine.url`) is IPv6 only, and Node on `::` takes IPv4 (Fly's proxy) too.
   */
  listenHost?: string;
  /** Keeps the calls within Fly's published rate limits, together with every other process sharing it (Redis); none: unlimited. */
  limiter?: Pick<FlyRateLimiter, 'acquire'>;
}

/** A machine as the Machines API returns it (the fields this adapter reads). */
export interface FlyMachine {
  id: string;
  name: string;
  state: string;
  region: string;
  instance_id: string;
  private_ip?: string;
  config?: {
    image?: string;
    env?: Record<string, string>;
    metadata?: Record<string, string>;
    checks?: Record<string, unknown>;
    [key: string]: unknown;
  };
  checks?: Array<{ name: string; status: string; output?: string; updated_at?: string }>;
  /** Newest first; an `exit` event's request tells how its process ended. */
  events?: Array<{ type: string; status?: string; request?: { exit_event?: { exit_code?: number; oom_killed?: boolean; requested_stop?: boolean } } }>;
  created_at: string;
  updated_at: string;
}

/** Fly's `ErrorResponse`. */
interface FlyErrorBody {
  error?: string;
  status?: string;
}

interface FlyResponse<T> {
  status: number;
  body: T;
}

interface RequestOptions {
  body?: unknown;
  signal?: AbortSignal;
  /** Statuses returned to the caller instead of thrown. */
  accept?: number[];
  timeoutMs?: number;
}

/** Every machine state Fly documents (fly.io/docs/machines/machine-states), as ours. */
const FLY_STATES: Record<string, MachineState> = {
  creating: 'starting',
  created: 'starting',
  starting: 'starting',
  restarting: 'starting',
  updating: 'starting',
  replacing: 'starting',
  started: 'started',
  stopping: 'stopped',
  stopped: 'stopped',
  suspending: 'stopped',
  suspended: 'stopped',
  destroying: 'destroyed',
  destroyed: 'destroyed',
  replaced: 'destroyed',
  failed: 'failed',
  // Fly moves it to destroyed: it will never start.
  launch_failed: 'failed',
};

/** States from which a machine never reaches `started`. */
const NEVER_STARTS = new Set(['failed', 'launch_failed', 'destroying', 'destroyed', 'replaced']);

/** States of a machine whose process has ended (or is ending). */
const ENDED = new Set(['stopping', 'stopped', 'destroying', 'destroyed']);

/** A machine that ended while starting: how its process exited (its latest exit event), else the state it is in. */
function endedError(m: FlyMachine): Error {
  const exit = exitOf(m);
  return exit ? machineExitError(exit) : new Error(`Machine ${m.id} became ${m.state} while starting`);
}

/** How the machine's process ended on its own, from its latest exit event; null when it was asked to stop or has none. */
function exitOf(m: FlyMachine): MachineExit | null {
  const exit = m.events?.find((event) => event.type === 'exit')?.request?.exit_event;
  if (!exit || exit.requested_stop) return null;
  if (exit.oom_killed) return { code: null, signal: 'the OOM killer', lastOutput: '' };
  // A process ended by a signal shows as -1.
  const code = typeof exit.exit_code === 'number' && exit.exit_code >= 0 ? exit.exit_code : null;
  return { code, signal: null, lastOutput: '' };
}

const PERMANENT_STATUSES = new Set([400, 401, 403, 404, 405, 410, 412, 422]);

/**
 * Machines on Fly.io through the Machines REST API. A session's machine is named
 * `vp-<sessionId>` and carries `session_id` in its metadata, so any provisioner
 * or cleanup process finds it again: `create` looks the session up first, and
 * a concurrent create from another process loses on the name (Fly names are
 * unique per app) and then returns the winner's machine.
 */
export class FlyMachineProvider implements MachineProvider {
  readonly name = 'fly';
  /** A Fly Machine is a VM of its own. */
  readonly isolation = 'vm';
  private readonly apiUrl: string;
  private readonly appPath: string;
  private readonly requestTimeoutMs: number;
  private readonly retries: number;
  private readonly retryBaseDelayMs: number;
  private readonly maxRetryAfterMs: number;
  private readonly maxWaitSeconds: number;
  private readonly listenHost: string;
  private readonly creating = new Map<string, Promise<Machine>>();

  constructor(private readonly options: FlyMachineProviderOptions) {
    for (const key of ['token', 'appName', 'image'] as const) {
      if (!options[key]) throw new Error(`FlyMachineProvider needs options.${key}`);
    }
    this.apiUrl = (options.apiUrl ?? 'https://api.machines.dev/v1').replace(/\/+$/, '');
    this.appPath = `/apps/${encodeURIComponent(options.appName)}`;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 15_000;
    this.retries = options.retries ?? 3;
    this.retryBaseDelayMs = options.retryBaseDelayMs ?? 250;
    this.maxRetryAfterMs = options.maxRetryAfterMs ?? 30_000;
    this.maxWaitSeconds = Math.min(MAX_WAIT_SECONDS, Math.max(1, Math.floor(options.maxWaitSeconds ?? MAX_WAIT_SECONDS)));
    this.listenHost = options.listenHost ?? '::';
  }

  async create(spec: MachineSpec, signal?: AbortSignal): Promise<Machine> {
    // A Fly machine sees no folder of the provisioner's host: a set of its own needs a volume or an image per set.
    if (spec.dependencies) throw new PermanentError('This project has dependencies of its own, which Fly machines cannot use yet (only the template dependencies)');
    // One create at a time per session in this process; other processes are kept
    // off by the machine name, which Fly gives to one machine of the app only.
    const pending = this.creating.get(spec.sessionId);
    if (pending) return pending;
    const creation = this.createOnce(spec, signal).finally(() => this.creating.delete(spec.sessionId));
    this.creating.set(spec.sessionId, creation);
    return creation;
  }

  async waitStarted(machine: Machine, timeoutMs: number, signal?: AbortSignal): Promise<Machine> {
    const deadline = Date.now() + timeoutMs;
    const budget = AbortSignal.timeout(Math.max(1, timeoutMs));
    const within = signal ? AbortSignal.any([signal, budget]) : budget;
    const path = `${this.machinePath(machine.id)}/wait`;
    let lastState = machine.state as string;
    try {
      // 1. Fly says the machine is `started` (its process runs).
      for (;;) {
        // Fly takes whole seconds (at least 1); the budget's own signal cuts a longer call short.
        const secs = Math.min(this.maxWaitSeconds, Math.max(1, Math.ceil((deadline - Date.now()) / 1000)));
        const res = await this.request<FlyErrorBody>('GET', `${path}?state=started&timeout=${secs}`, {
          signal: within,
          accept: [400, 404, 408],
          timeoutMs: secs * 1000 + this.requestTimeoutMs,
        });
        if (res.status === 200) break;
        // 408: not started within `secs`; 400: not reachable now; 404: gone. Look at the
        // machine: a failed or destroyed one will never start (a retried create replaces it).
        const current = await this.fetchMachine(machine.id, within);
        lastState = current?.state ?? 'destroyed';
        // Its process ended (restart policy `no`): it will not start.
        if (current && ENDED.has(current.state)) throw endedError(current);
        if (!current || NEVER_STARTS.has(current.state)) {
          throw new Error(`Machine ${machine.id} is ${lastState} and will not start (Fly wait answered ${res.status}: ${res.body?.error ?? 'no detail'})`);
        }
        if (current.state === 'started') break;
        if (res.status === 400) await sleep(250, within);
      }
      // 2. Its health checks pass (the container accepts connections and is ready).
      for (;;) {
        const current = await this.fetchMachine(machine.id, within);
        lastState = current?.state ?? 'destroyed';
        if (!current || NEVER_STARTS.has(current.state) || ENDED.has(current.state)) {
          throw current ? endedError(current) : new Error(`Machine ${machine.id} became ${lastState} while starting`);
        }
        if (current.state === 'started' && checksPass(current)) return { ...this.toMachine(current), state: 'started' };
        lastState = current.state === 'started' ? 'started, health checks not passing' : current.state;
        await sleep(250, within);
      }
    } catch (error) {
      if (budget.aborted && !signal?.aborted) {
        throw new TimeoutError(`machine ${machine.id} to reach state started on Fly (last seen: ${lastState})`, timeoutMs);
      }
      throw error;
    }
  }

  async get(machineId: string): Promise<Machine | null> {
    const machine = await this.fetchMachine(machineId);
    return machine && isLive(machine) && sessionIdOf(machine) ? this.toMachine(machine) : null;
  }

  async findBySession(sessionId: string): Promise<Machine | null> {
    const machine = await this.findLive(sessionId);
    return machine ? this.toMachine(machine) : null;
  }

  async destroy(machineId: string): Promise<void> {
    // 404: already gone, which is what was asked for.
    await this.request('DELETE', `${this.machinePath(machineId)}?force=true`, { accept: [404] });
  }

  /** Stops the machine (with `auto_destroy`, Fly then destroys it). A machine that is gone counts as stopped. */
  async stop(machineId: string): Promise<void> {
    await this.request('POST', `${this.machinePath(machineId)}/stop`, { body: {}, accept: [404] });
  }

  async list(): Promise<Machine[]> {
    const { body } = await this.request<FlyMachine[]>('GET', `${this.appPath}/machines`);
    return body.filter((m) => isLive(m) && sessionIdOf(m)).map((m) => this.toMachine(m));
  }

  async close(): Promise<void> {
    // Stateless HTTP client (fetch's global pool); nothing to release.
  }

  private async createOnce(spec: MachineSpec, signal?: AbortSignal, replacedFailed = false): Promise<Machine> {
    const existing = await this.findLive(spec.sessionId, signal);
    if (existing) return this.reuse(existing, spec, signal, replacedFailed);
    const created = await this.postMachine(spec, signal);
    if ('found' in created) return this.reuse(created.found, spec, signal, replacedFailed);
    const res = created;
    if (res.status === 200 || res.status === 201) return this.toMachine(res.body);
    // The name is taken: another create for this session won the race.
    const winner = await this.findLive(spec.sessionId, signal);
    if (winner) return this.reuse(winner, spec, signal, replacedFailed);
    const detail = `Fly API POST ${this.appPath}/machines answered ${res.status}: ${res.body?.error ?? 'no detail'}`;
    if (res.status === 422) throw new PermanentError(detail);
    throw new Error(`${detail} (and no machine of session ${spec.sessionId} exists)`);
  }

  /**
   * The create call, retried like any other, except that after an answer that
   * leaves it unknown whether the machine was made (a 5xx, a timeout, a broken
   * connection) the session's machine is looked up first: found, it is the answer.
   */
  private async postMachine(spec: MachineSpec, signal?: AbortSignal): Promise<FlyResponse<FlyMachine & FlyErrorBody> | { found: FlyMachine }> {
    const path = `${this.appPath}/machines`;
    return this.retrying(
      `Fly API POST ${path}`,
      async (attempt) => {
        const found = attempt > 1 ? await this.findLive(spec.sessionId, signal) : null;
        if (found) return { found };
        return this.requestOnce<FlyMachine & FlyErrorBody>('POST', path, { body: this.createBody(spec), signal, accept: [409, 422] }, attempt);
      },
      { ...this.retryOptions(signal), shouldRetry: (error) => error instanceof PassingFailure || error instanceof TimeoutError },
    );
  }

  /** `call` tried again as `options` say; a failure that may pass, still there at the last attempt, is said with `what` and the count. */
  private async retrying<T>(what: string, call: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
    try {
      return await retry(call, options);
    } catch (error) {
      if (error instanceof PassingFailure) throw new Error(`${what} ${error.message} after ${error.attempt} attempts: ${error.detail}`);
      throw error;
    }
  }

  /** How API calls are tried again: failures that may pass (429, 5xx, 408, capacity, network), with backoff or Retry-After. */
  private retryOptions(signal?: AbortSignal): RetryOptions {
    return {
      attempts: this.retries + 1,
      initialDelayMs: this.retryBaseDelayMs,
      maxDelayMs: 5000,
      signal,
      shouldRetry: (error) => error instanceof PassingFailure,
      delayOf: (error) => (error instanceof PassingFailure ? (error.retryAfterMs ?? undefined) : undefined),
    };
  }

  /** An existing machine of the session: a stopped one is started, a failed one replaced once. */
  private async reuse(machine: FlyMachine, spec: MachineSpec, signal: AbortSignal | undefined, replacedFailed: boolean): Promise<Machine> {
    if ((machine.state === 'failed' || machine.state === 'launch_failed') && !replacedFailed) {
      await this.destroy(machine.id);
      return this.createOnce(spec, signal, true);
    }
    if (machine.state === 'stopped' || machine.state === 'suspended') {
      await this.request('POST', `${this.machinePath(machine.id)}/start`, { signal, accept: [412] });
      return { ...this.toMachine(machine), state: 'starting' };
    }
    return this.toMachine(machine);
  }

  private createBody(spec: MachineSpec) {
    return {
      name: flyMachineName(spec.sessionId),
      ...(this.options.region ? { region: this.options.region } : {}),
      config: {
        image: this.options.image,
        env: { ...spec.env, PORT: String(INTERNAL_PORT), HOST: this.listenHost, WORK_DIR: '/app/work' },
        guest: { cpu_kind: 'shared', cpus: spec.resourceLimits.cpus, memory_mb: spec.resourceLimits.memoryMb },
        metadata: { session_id: spec.sessionId, project_id: spec.projectId },
        services: [
          {
            internal_port: INTERNAL_PORT,
            protocol: 'tcp',
            ports: [
              { port: 443, handlers: ['tls', 'http'] },
              { port: 80, handlers: ['http'] },
            ],
            // What Fly's proxy routes by: it sends no request to a machine until this passes.
            checks: [{ type: 'http', protocol: 'http', method: 'GET', path: SERVING_CHECK_PATH, interval: '2s', timeout: '2s', grace_period: '1s' }],
          },
        ],
        // The same check, named: what `waitStarted` reads (top-level checks are informational to the proxy).
        checks: { serving: { type: 'http', port: INTERNAL_PORT, method: 'GET', path: SERVING_CHECK_PATH, interval: '2s', timeout: '2s', grace_period: '1s' } },
        restart: { policy: 'no' },
        auto_destroy: true,
      },
    };
  }

  /** The oldest machine of the session that is not destroyed (the one a create race left standing). */
  private async findLive(sessionId: string, signal?: AbortSignal): Promise<FlyMachine | null> {
    const { body } = await this.request<FlyMachine[]>(
      'GET',
      `${this.appPath}/machines?metadata.session_id=${encodeURIComponent(sessionId)}`,
      { signal },
    );
    // Filtered again here: the filter is the server's, the guarantee is ours.
    const live = body.filter((m) => sessionIdOf(m) === sessionId && isLive(m));
    live.sort((a, b) => a.created_at.localeCompare(b.created_at));
    return live[0] ?? null;
  }

  private async fetchMachine(machineId: string, signal?: AbortSignal): Promise<FlyMachine | null> {
    const res = await this.request<FlyMachine>('GET', this.machinePath(machineId), { signal, accept: [404] });
    return res.status === 404 ? null : res.body;
  }

  private machinePath(machineId: string): string {
    return `${this.appPath}/machines/${encodeURIComponent(machineId)}`;
  }

  private toMachine(m: FlyMachine): Machine {
    const host = m.private_ip ? `[${m.private_ip}]` : `${m.id}.vm.${this.options.appName}.internal`;
    return { id: m.id, sessionId: sessionIdOf(m) ?? '', state: FLY_STATES[m.state] ?? 'starting', url: `http://${host}:${INTERNAL_PORT}` };
  }

  /**
   * One API call: bearer token, JSON, a timeout, and retries with backoff for
   * 408, 429, 5xx, `insufficient_capacity` and network failures (honouring Retry-After).
   * 2xx and the `accept`ed statuses are returned; other 4xx are PermanentErrors.
   */
  private async request<T = unknown>(method: string, path: string, options: RequestOptions = {}): Promise<FlyResponse<T>> {
    return this.retrying(`Fly API ${method} ${path}`, (attempt) => this.requestOnce<T>(method, path, options, attempt), this.retryOptions(options.signal));
  }

  private async requestOnce<T>(method: string, path: string, options: RequestOptions, attempt: number): Promise<FlyResponse<T>> {
    const what = `Fly API ${method} ${path}`;
    const timeoutMs = options.timeoutMs ?? this.requestTimeoutMs;
    const timeout = AbortSignal.timeout(timeoutMs);
    await this.options.limiter?.acquire(method, path, options.signal);
    let response: Response;
    let text: string;
    try {
      response = await fetch(`${this.apiUrl}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.options.token}`,
          accept: 'application/json',
          ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        signal: options.signal ? AbortSignal.any([options.signal, timeout]) : timeout,
      });
      text = await response.text();
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason;
      if (timeout.aborted) throw new TimeoutError(what, timeoutMs);
      throw new PassingFailure('failed', errorMessage((error as Error).cause ?? error), attempt);
    }
    const body = parseJson(text);
    const status = response.status;
    if (status >= 200 && status < 300) return { status, body: body as T };

    const flyError = (body ?? {}) as FlyErrorBody;
    const detail = flyError.error ?? (text.slice(0, 200) || response.statusText);
    // 408: the API gave up on the request in time (a wait's 408 is an answer, when the caller accepts it).
    const timedOut = status === 408 && !options.accept?.includes(408);
    if (timedOut || status === 429 || status >= 500 || flyError.status === 'insufficient_capacity') {
      const capacity = flyError.status === 'insufficient_capacity' ? ' (insufficient_capacity)' : '';
      throw new PassingFailure(`answered ${status}${capacity}`, detail, attempt, this.retryAfter(response.headers.get('retry-after')));
    }
    if (options.accept?.includes(status)) return { status, body: body as T };
    if (PERMANENT_STATUSES.has(status)) throw new PermanentError(`${what} answered ${status}: ${detail}`);
    throw new Error(`${what} answered ${status}: ${detail}`);
  }

  /** Retry-After in seconds or as an HTTP date, capped; null when absent or unreadable. */
  private retryAfter(header: string | null): number | null {
    if (!header) return null;
    const seconds = Number(header);
    const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(header) - Date.now();
    return Number.isFinite(ms) ? Math.min(this.maxRetryAfterMs, Math.max(0, ms)) : null;
  }
}

/** A 429, a 5xx, no capacity or no answer at all: another try may meet none of them. */
class PassingFailure extends Error {
  constructor(
    message: string,
    readonly detail: string,
    readonly attempt: number,
    /** The pause the answer asked for (Retry-After), ms. */
    readonly retryAfterMs: number | null = null,
  ) {
    super(message);
  }
}

export const flyMachineName = (sessionId: string) => `vp-${sessionId.toLowerCase()}`;

function sessionIdOf(m: FlyMachine): string | undefined {
  return m.config?.metadata?.session_id || undefined;
}

function isLive(m: FlyMachine): boolean {
  return m.state !== 'destroyed' && m.state !== 'destroying' && m.state !== 'replaced';
}

/** Every configured check reports `passing` (a machine without checks passes). */
function checksPass(m: FlyMachine): boolean {
  const names = Object.keys(m.config?.checks ?? {});
  return names.every((name) => m.checks?.some((c) => c.name === name && c.status === 'passing'));
}

function parseJson(text: string): unknown {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
