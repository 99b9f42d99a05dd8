import { DEMO_PROJECT_ID, isTerminal, sleep, type SessionEvent } from '@velocity/contracts';
import { followSessionEvents, retry } from '@velocity/runtime';
import type { FaultCluster } from './cluster';

/** One row of the fault table. */
export interface TrialRow {
  fault: string;
  trials: number;
  asked: number;
  active: number;
  error: number;
  stuck: number;
  orphanMachines: number;
  duplicateMachines: number;
  clientsLeftWaiting: number;
  /** How often clients lost their event stream and resumed it with Last-Event-ID. */
  clientReconnects: number;
  /** Wall time of the whole row, ms. */
  ms: number;
  /** What went wrong, per session, for a row that is not all zeros. */
  problems: string[];
}

export interface TrialContext {
  cluster: FaultCluster;
  sessionIds: string[];
  /** Resolves when a session stores an event that matches. */
  waitForEvent(sessionId: string, match: (event: SessionEvent) => boolean, timeoutMs?: number): Promise<SessionEvent>;
}

export interface TrialOptions {
  fault: string;
  sessions: number;
  /** Breaks something while the sessions are being provisioned. */
  inject(ctx: TrialContext): Promise<void>;
  /** How long a session may take to settle (its provisioning deadline plus cleanup's grace). */
  settleMs: number;
}

/**
 * Asks for sessions, follows each with a reconnecting client (as a browser
 * would), injects the fault, then counts what the promise to users forbids:
 * sessions stuck outside active/error, machines with no live session, two
 * machines for one session, clients that never heard the end.
 */
export async function runTrial(cluster: FaultCluster, options: TrialOptions): Promise<TrialRow> {
  const started = Date.now();
  const watcher = new MachineWatcher(cluster);
  watcher.start();
  const listeners = new Map<string, ((event: SessionEvent) => void)[]>();
  const seen = new Map<string, SessionEvent[]>();
  const sessionIds = await Promise.all(Array.from({ length: options.sessions }, () => postSession(cluster.baseUrl)));
  const followers = sessionIds.map((sessionId) =>
    followSessionEvents({
      baseUrls: [cluster.baseUrl],
      sessionId,
      timeoutMs: options.settleMs,
      onEvent: (event) => {
        seen.set(sessionId, [...(seen.get(sessionId) ?? []), event]);
        for (const listener of listeners.get(sessionId) ?? []) listener(event);
      },
    }),
  );
  const waitForEvent: TrialContext['waitForEvent'] = (sessionId, match, timeoutMs = options.settleMs) =>
    new Promise((resolve, reject) => {
      const already = seen.get(sessionId)?.find(match);
      if (already) return resolve(already);
      const timer = setTimeout(() => reject(new Error(`Timed out after ${timeoutMs} ms waiting for an event of ${sessionId}`)), timeoutMs);
      listeners.set(sessionId, [
        ...(listeners.get(sessionId) ?? []),
        (event) => {
          if (!match(event)) return;
          clearTimeout(timer);
          resolve(event);
        },
      ]);
    });

  const problems: string[] = [];
  await options.inject({ cluster, sessionIds, waitForEvent }).catch((err) => problems.push(`inject: ${(err as Error).message}`));
  const outcomes = await Promise.allSettled(followers);
  const clientsLeftWaiting = outcomes.filter((o) => o.status === 'rejected').length;
  const clientReconnects = outcomes.reduce((n, o) => n + (o.status === 'fulfilled' ? o.value.reconnects : 0), 0);
  outcomes.forEach((o, i) => o.status === 'rejected' && problems.push(`${sessionIds[i]}: client ${(o.reason as Error).message}`));

  const rows = await settle(cluster, sessionIds, started + options.settleMs + 5000);
  // A machine may still be on its way down after a failure: give destroys a moment.
  const orphans = await orphanMachines(cluster, rows, 5000);
  watcher.stop();
  for (const [id, row] of rows) if (!row || !['active', 'error'].includes(row)) problems.push(`${id}: stuck in ${row ?? 'no row'}`);
  for (const id of orphans) problems.push(`${id}: orphan machine`);
  for (const [id, n] of watcher.duplicates) problems.push(`${id}: ${n + 1} machines at once`);

  await Promise.all(sessionIds.map(async (id) => (await cluster.machines.findBySession(id)) && cluster.machines.destroy(`local-${id}`)));
  const statuses = [...rows.values()];
  return {
    fault: options.fault,
    trials: options.sessions,
    asked: sessionIds.length,
    active: statuses.filter((s) => s === 'active').length,
    error: statuses.filter((s) => s === 'error').length,
    stuck: statuses.filter((s) => !s || !['active', 'error', 'ended'].includes(s)).length,
    orphanMachines: orphans.length,
    duplicateMachines: [...watcher.duplicates.values()].reduce((a, b) => a + b, 0),
    clientsLeftWaiting,
    clientReconnects,
    ms: Date.now() - started,
    problems,
  };
}

/** Asks for a session of the demo project, again every 250 ms (for some 5 s) while the api is down or refuses. */
async function postSession(baseUrl: string): Promise<string> {
  const post = async () => {
    const res = await fetch(`${baseUrl}/v1/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ projectId: DEMO_PROJECT_ID }),
    });
    if (res.status !== 202) throw new Error(`POST /v1/sessions answered ${res.status}`);
    return res;
  };
  const accepted = await retry(post, { attempts: 20, initialDelayMs: 250, maxDelayMs: 250, jitter: false }).catch(() => {
    throw new Error('POST /v1/sessions kept failing');
  });
  return (await accepted.json()).sessionId;
}

/** Waits until every row is active, error or ended, or the time is up; returns each row's status. */
async function settle(cluster: FaultCluster, sessionIds: string[], until: number): Promise<Map<string, string | null>> {
  const statuses = new Map<string, string | null>();
  for (;;) {
    for (const id of sessionIds) statuses.set(id, (await cluster.store.getSession(id).catch(() => null))?.status ?? null);
    const settled = [...statuses.values()].every((s) => s === 'active' || (s !== null && isTerminal(s as never)));
    if (settled || Date.now() > until) return statuses;
    await sleep(250);
  }
}

/** Machines of these sessions whose session is not active, still there after `graceMs`. */
async function orphanMachines(cluster: FaultCluster, rows: Map<string, string | null>, graceMs: number): Promise<string[]> {
  const deadline = Date.now() + graceMs;
  for (;;) {
    const processes = await cluster.machines.processes();
    const orphans = [...new Set(processes.map((p) => p.sessionId))].filter((id) => rows.has(id) && rows.get(id) !== 'active');
    if (orphans.length === 0 || Date.now() > deadline) return orphans;
    await sleep(250);
  }
}

/** Polls the process table: the most machine processes any one session had at the same time, beyond one. */
class MachineWatcher {
  readonly duplicates = new Map<string, number>();
  private timer?: NodeJS.Timeout;
  private running = false;

  constructor(private readonly cluster: FaultCluster) {}

  start(): void {
    this.timer = setInterval(() => void this.poll(), 100);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async poll(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      const counts = new Map<string, number>();
      for (const p of await this.cluster.machines.processes()) counts.set(p.sessionId, (counts.get(p.sessionId) ?? 0) + 1);
      for (const [id, n] of counts) if (n > 1) this.duplicates.set(id, Math.max(this.duplicates.get(id) ?? 0, n - 1));
    } finally {
      this.running = false;
    }
  }
}
