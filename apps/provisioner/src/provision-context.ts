import type { Queue } from 'bullmq';
import type { Config, Diagnostic, FileChangeLog, ProjectFile, ProvisionSessionJob, ProvisionStep, SessionEvent } from '@velocity/contracts';
import type { EventLog } from '@velocity/ops';
import type { Faults, WarmPool, Machine, MachineProvider } from '@velocity/machines';
import type { Logger, Turn, Turns } from '@velocity/runtime';
import type { PreviewSession, Project, ProjectStore, SessionRecords, SessionQueries } from '@velocity/session-store';
import type { ProvisionObserver } from './provision-observer';
import type { DependencyCache } from './dependencies/dependency-cache';

/** What the steps use, handed in by the composition root (ports only, no adapters). */
export interface ProvisionDeps {
  config: Config;
  store: ProjectStore & SessionRecords & SessionQueries;
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
  /** Sessions run their steps in turns, oldest first; without it, all at once. */
  turns?: Turns | null;
  /** Installed dependency sets; without it, a project with dependencies of its own fails at install-dependencies. */
  dependencies?: DependencyCache | null;
  /** How long progress events wait to be stored with what follows; PROGRESS_COALESCE_MS by default. */
  progressCoalesceMs?: number;
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
  /** What the verified page's build reported (verify-url): `ready` carries it, empty when it compiled. */
  diagnostics?: Diagnostic[];
  /** Progress events held back to be stored with what follows, in one round trip (pipeline.ts `emit`). */
  held?: SessionEvent[];
  /** Stores the held events when no other event comes soon. */
  flushTimer?: NodeJS.Timeout;
  /** The batch being stored now; the next one waits for it, so events stay in order. */
  flushing?: Promise<void>;
  /** This session's turn at running steps (ProvisionDeps.turns), while it holds one. */
  turn?: Turn;
  /** Stores a `running` progress event of the current step (what a long step has done so far). */
  reportProgress?: (progress: StepDetail) => void;
  /** The project's files of DEPENDENCY_FILES as ensure-project read them (undefined when it seeded the project). */
  dependencyFiles?: ProjectFile[];
  /** The project's installed dependencies (install-dependencies), when it has a set of its own. */
  dependencies?: { key: string; dir: string };
}

/** What a step tells of its work, on its `done` (and `running`) progress events. */
export interface StepDetail {
  packages?: number;
  bytes?: number;
  cached?: boolean;
}

/**
 * Runs a long wait that needs no CPU of ours (a cold machine booting, a pause
 * between probes) without holding the session's turn, so others run meanwhile;
 * takes a turn again after it, ahead of every later request.
 */
export async function awayFromTurn<T>(ctx: ProvisionContext, wait: () => Promise<T>): Promise<T> {
  const { turns } = ctx.deps;
  if (!turns || !ctx.turn) return wait();
  ctx.turn.release();
  ctx.turn = undefined;
  try {
    return await wait();
  } finally {
    ctx.turn = await turns.take(ctx.job.requestedAt, ctx.signal);
  }
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
  run(ctx: ProvisionContext, budgetMs: number): Promise<StepDetail | void>;
}

/** Returns the value or throws: a step that needs an earlier step's result says which. */
export function required<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`Provisioning step ran before ${what} was known`);
  return value;
}
