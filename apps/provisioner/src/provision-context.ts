import type { Queue } from 'bullmq';
import type {
  Config,
  EventLog,
  Faults,
  FileChangeLog,
  WarmPool,
  Logger,
  Machine,
  MachineProvider,
  PreviewSession,
  Project,
  ProvisionSessionJob,
  ProvisionStep,
  SessionEvent,
  SessionStore,
} from '@velocity/shared';
import type { ProvisionObserver } from './provision-observer';

/** What the steps use, handed in by the composition root (ports only, no adapters). */
export interface ProvisionDeps {
  config: Config;
  store: SessionStore;
  provider: MachineProvider;
  events: EventLog;
  /** Where expiry jobs go once a session is active. */
  cleanupQueue: Queue;
  logger: Logger;
  /** Injected faults (fault suite and tests only). */
  faults?: Faults | null;
  /** Told of each step's duration, ready and failures (the provisioner's /metrics); optional. */
  observer?: ProvisionObserver;
  /** The warm pool of pre-started machines, when one is configured. */
  pool?: WarmPool | null;
  /** Projects' file changes: a claim hands the machine the files with the cursor they are current to. */
  changes?: FileChangeLog | null;
}

/** One provisioning run of one session; steps read and fill it in order. */
export interface ProvisionContext {
  deps: ProvisionDeps;
  job: ProvisionSessionJob;
  attempt: number;
  logger: Logger;
  signal: AbortSignal;
  project?: Project;
  session?: PreviewSession;
  machine?: Machine;
  /** The id in the preview URL: the session's own, or its pooled machine's. */
  routeId?: string;
  previewUrl?: string;
  /** Events held back to be stored with the next one, in one round trip (a step's `done` goes with the next step's `started`). */
  held?: SessionEvent[];
}

/**
 * One provisioning step. Steps are idempotent: run again after a crash or a
 * retry, each resumes from what the row and the provider already say.
 */
export interface Step {
  name: ProvisionStep;
  /** How long the step may take, before the overall deadline cuts it shorter. */
  timeoutMs(config: Config): number;
  /** `budgetMs`: the time this run of the step has; a step that waits says what for when it runs out. */
  run(ctx: ProvisionContext, budgetMs: number): Promise<void>;
}

/** Returns the value or throws: a step that needs an earlier step's result says which. */
export function required<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`Provisioning step ran before ${what} was known`);
  return value;
}
