import { MACHINE_RETRY_EXIT_CODE, PermanentError, type ResourceLimits } from '@velocity/contracts';

/** What a provider needs to start a preview machine for one session. */
export interface MachineSpec {
  sessionId: string;
  projectId: string;
  templateType: string;
  resourceLimits: ResourceLimits;
  /** Environment for the preview container (session id, api URL, token, base path...). */
  env: Record<string, string>;
  /**
   * A warm-pool machine: started ahead of need, so it may yield the CPU to
   * machines that serve sessions (the local provider starts it at a lower
   * priority; it takes the normal one back when claimed).
   */
  background?: boolean;
  /**
   * The project's installed dependencies, when it has a set of its own (else the
   * template's, the service's own): shown to the machine read-only.
   */
  dependencies?: { key: string; nodeModulesDir: string };
}

export type MachineState = 'starting' | 'started' | 'stopped' | 'destroyed' | 'failed';

export interface Machine {
  /** Provider's id of the machine (a pid-based id locally, a Fly machine id on Fly). */
  id: string;
  sessionId: string;
  state: MachineState;
  /**
   * Where the routing edge sends a session's requests: `http://host:port`, or
   * `http://unix:<socket path>:` for a machine on a Unix socket (openHttp and
   * the edge take both).
   */
  url: string;
}

/**
 * How a provider keeps a machine (which runs its project's code: Vite runs the
 * project's config files) from the services and from other machines:
 * - `vm`: a machine of its own (Fly), or no project code runs at all (noop);
 * - `sandbox`: a local process in a sandbox (bubblewrap) that sees no other
 *   process and only its own folder of the host's files;
 * - `none`: a plain local process, which reads what its user may read.
 */
export type MachineIsolation = 'vm' | 'sandbox' | 'none';

/**
 * The port for machines. Adapters: local (one child process per session) and
 * Fly (Fly Machines API). Every method is idempotent and keyed by session id:
 * `create` for a session that already has a machine returns that machine.
 */
export interface MachineProvider {
  readonly name: string;
  readonly isolation: MachineIsolation;
  /**
   * How this provider's machines reach the api, when not at API_INTERNAL_URL
   * (a sandboxed local machine has no network: it gets the api's Unix socket).
   */
  readonly machineApiUrl?: string;
  create(spec: MachineSpec, signal?: AbortSignal): Promise<Machine>;
  /**
   * Resolves once the machine runs and accepts connections; throws on timeout,
   * and at once (`machineExitError`) when the machine ends meanwhile.
   */
  waitStarted(machine: Machine, timeoutMs: number, signal?: AbortSignal): Promise<Machine>;
  /**
   * Resolves once the machine has ended (its process exited), saying how; stays
   * pending while it runs; rejects with the signal's reason when `signal` aborts.
   * Optional: where a provider cannot tell, waits on the machine end by their timeouts.
   */
  exited?(machine: Machine, signal: AbortSignal): Promise<MachineExit>;
  get(machineId: string): Promise<Machine | null>;
  findBySession(sessionId: string): Promise<Machine | null>;
  /** Destroys the machine; a machine that is already gone counts as destroyed. */
  destroy(machineId: string): Promise<void>;
  list(): Promise<Machine[]>;
  /**
   * A machine started in the background (a warm-pool machine, at a lower
   * priority) now serves a session: back to the normal priority. Optional: a
   * provider without priorities has nothing to do. False when not allowed.
   */
  restorePriority?(machineId: string): Promise<boolean>;
  /** Releases the provider's own resources (not the machines). */
  close(): Promise<void>;
}

/**
 * The machine of a session: the one recorded on its row (a claimed warm-pool
 * machine is keyed by its own route id, not the session's), else the one made
 * for the session, if any.
 */
export async function machineOfSession(
  provider: MachineProvider,
  session: { id: string; containerId: string | null },
): Promise<Machine | null> {
  const recorded = session.containerId ? await provider.get(session.containerId) : null;
  return recorded ?? provider.findBySession(session.id);
}

/** How a machine's process ended. */
export interface MachineExit {
  /** Its exit code; null when a signal ended it, or when it is not known. */
  code: number | null;
  /** The signal that ended it, if one did. */
  signal: string | null;
  /** Its last line of output, when the provider keeps it (and it printed any); '' otherwise. */
  lastOutput: string;
}

/** `exited with code 1`, `was ended by SIGKILL`, or `exited` when the provider cannot say how. */
export function describeExit(exit: Pick<MachineExit, 'code' | 'signal'>): string {
  if (exit.signal) return `was ended by ${exit.signal}`;
  return exit.code === null ? 'exited' : `exited with code ${exit.code}`;
}

/**
 * What a step fails with when its machine ends while starting. An exit with a
 * code of its own (other than 0, asked to stop, and MACHINE_RETRY_EXIT_CODE,
 * the service's own failure) is the project's doing: its config ends the
 * process or its code crashes it at load, and a new machine on the same files
 * does the same, so it is not retried. An exit by a signal (the OOM killer, an
 * operator, the host going down) or of unknown cause may not happen again.
 */
export function machineExitError(exit: MachineExit): Error {
  const said = exit.lastOutput ? `: ${exit.lastOutput}` : '';
  const message = `the machine ${describeExit(exit)} while starting${said}`;
  const projects = exit.signal === null && exit.code !== null && exit.code !== 0 && exit.code !== MACHINE_RETRY_EXIT_CODE;
  return projects ? new PermanentError(message) : new Error(message);
}

/**
 * Runs `work` while the machine runs: when the provider tells of its exit
 * first, `work`'s signal is aborted, `work` is let end, and this throws
 * `machineExitError` at once (not when `work` would have timed out). A
 * provider that cannot tell (no `exited`): `work` alone.
 */
export async function whileMachineRuns<T>(
  provider: Pick<MachineProvider, 'exited'>,
  machine: Machine,
  signal: AbortSignal | undefined,
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const done = new AbortController();
  const within = signal ? AbortSignal.any([signal, done.signal]) : done.signal;
  if (!provider.exited) return work(within);
  let exitError: Error | undefined;
  const exit = provider.exited(machine, within).then((how) => {
    exitError = machineExitError(how);
    done.abort(exitError);
    throw exitError;
  });
  const working = work(within);
  try {
    return await Promise.race([working, exit]);
  } catch (error) {
    // The exit won: `work` ends on its aborted signal before the caller goes on.
    if (error === exitError) await working.catch(() => undefined);
    throw error;
  } finally {
    done.abort();
    exit.catch(() => undefined);
  }
}
