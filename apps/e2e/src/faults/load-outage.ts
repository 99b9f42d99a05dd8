import { randomUUID } from 'node:crypto';
import { DEMO_PROJECT_ID, sleep } from '@velocity/contracts';
import { followSessionEvents } from '@velocity/runtime';
import type { FaultCluster } from './cluster';

/** One row of the outage-under-load table. */
export interface LoadOutageRow {
  fault: string;
  /** Requests sent (POST session, PUT file) and how many were answered within the bound. */
  requests: number;
  answeredWithinBound: number;
  slowestMs: number;
  /** 503s, each with Retry-After. */
  unavailable: number;
  unavailableWithoutRetryAfter: number;
  /** Rows of sessions whose POST was not answered 202 that still became active. */
  ghostSessions: number;
  /** Writes answered 200/201 whose content is not what the database holds. */
  lostWrites: number;
  /** Event streams open when the outage began; how many the api ended, and how many kept serving (heartbeats after it). */
  streams: number;
  streamsEnded: number;
  streamsServing: number;
  /** From the end of the outage to the first session accepted, and to that session's `ready`. */
  recoveryAcceptMs: number | null;
  recoveryReadyMs: number | null;
  problems: string[];
}

export interface LoadOutageOptions {
  dependency: 'redis' | 'database';
  outageMs: number;
  /** Every request must be answered within this. */
  boundMs: number;
  /** Steady load: one session request, and this many file writes, a second. */
  writesPerSecond?: number;
  /** Event streams held open on live sessions when the outage begins. */
  streams?: number;
}

const LOAD_BEFORE_MS = 3000;
const LOAD_AFTER_MS = 6000;

/**
 * Redis or Postgres unreachable (the proxy in front of it drops every
 * connection and refuses new ones) for `outageMs` under a steady load of
 * session requests, file writes and open event streams. Counts what the promise
 * forbids: a request not answered within the bound, a session made from a
 * request that was answered as failed, an acknowledged write that is not in the
 * database, an event stream left hanging; and how soon new sessions are
 * accepted and ready after the service is back.
 */
export async function loadOutage(cluster: FaultCluster, options: LoadOutageOptions): Promise<LoadOutageRow> {
  const base = cluster.baseUrl;
  const problems: string[] = [];
  const latencies: number[] = [];
  let unavailable = 0;
  let unavailableWithoutRetryAfter = 0;
  const accepted = new Set<string>();
  const acknowledgedWrites = new Map<string, string>();
  const projectId = await createProject(base);

  const send = async (method: string, path: string, body: unknown): Promise<{ status: number; text: string } | null> => {
    const started = Date.now();
    try {
      const res = await fetch(`${base}${path}`, {
        method,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(options.boundMs * 3),
      });
      const text = await res.text();
      latencies.push(Date.now() - started);
      if (res.status === 503) {
        unavailable += 1;
        if (!res.headers.get('retry-after')) unavailableWithoutRetryAfter += 1;
      }
      return { status: res.status, text };
    } catch (err) {
      latencies.push(Date.now() - started);
      problems.push(`${method} ${path}: no answer (${(err as Error).message})`);
      return null;
    }
  };

  // Live sessions for the streams, before the load starts.
  const streamSessions = await Promise.all(Array.from({ length: options.streams ?? 3 }, () => readySession(base)));
  const streams = streamSessions.map((sessionId) => openStream(base, sessionId));

  let outageEndedAt = 0;
  let recoveryAcceptMs: number | null = null;
  let recoveryReadyMs: number | null = null;
  const readies: Promise<void>[] = [];
  const postSession = async () => {
    const res = await send('POST', '/v1/sessions', { projectId: DEMO_PROJECT_ID });
    if (res?.status !== 202) return;
    const { sessionId } = JSON.parse(res.text) as { sessionId: string };
    accepted.add(sessionId);
    const acceptedAt = Date.now();
    const firstAfterRecovery = outageEndedAt > 0 && recoveryAcceptMs === null;
    if (firstAfterRecovery) recoveryAcceptMs = acceptedAt - outageEndedAt;
    readies.push(
      followSessionEvents({ baseUrls: [base], sessionId, timeoutMs: 60_000 })
        .then((followed) => {
          if (firstAfterRecovery && followed.events.some((e) => e.type === 'ready')) recoveryReadyMs = Date.now() - outageEndedAt;
        })
        .catch((err: Error) => void problems.push(`${sessionId}: ${err.message}`)),
    );
  };
  let write = 0;
  const putFile = async () => {
    const path = `load/${write++}.txt`;
    const content = `${path} ${randomUUID()}\n`;
    const res = await send('PUT', `/v1/projects/${projectId}/files/${path}`, { content });
    if (res && (res.status === 200 || res.status === 201)) acknowledgedWrites.set(path, content);
  };

  const load = startLoad([postSession], 1000);
  const writes = startLoad([putFile], 1000 / (options.writesPerSecond ?? 4));
  await sleep(LOAD_BEFORE_MS);
  const proxy = options.dependency === 'redis' ? cluster.redisProxy : cluster.pgProxy;
  const outageStartedAt = Date.now();
  proxy.cut(options.outageMs);
  await sleep(options.outageMs);
  proxy.restore();
  outageEndedAt = Date.now();
  await sleep(LOAD_AFTER_MS);
  await Promise.all([load.stop(), writes.stop()]);
  await Promise.all(readies);

  const streamsEnded = streams.filter((stream) => stream.endedAt !== null && stream.endedAt <= outageStartedAt + options.outageMs + options.boundMs).length;
  const streamsServing = streams.filter((stream) => stream.endedAt === null && stream.lastDataAt > outageEndedAt).length;
  for (const stream of streams) stream.close();
  const ghostSessions = await countGhosts(cluster, accepted, outageStartedAt - LOAD_BEFORE_MS, problems);
  const lostWrites = await countLostWrites(cluster, projectId, acknowledgedWrites, problems);
  for (const sessionId of [...accepted, ...streamSessions]) await fetch(`${base}/v1/sessions/${sessionId}`, { method: 'DELETE' }).catch(() => undefined);

  return {
    fault: `${options.dependency === 'redis' ? 'Redis' : 'Postgres'} unreachable for ${options.outageMs / 1000} s under load`,
    requests: latencies.length,
    answeredWithinBound: latencies.filter((ms) => ms <= options.boundMs).length,
    slowestMs: Math.max(0, ...latencies),
    unavailable,
    unavailableWithoutRetryAfter,
    ghostSessions,
    lostWrites,
    streams: streams.length,
    streamsEnded,
    streamsServing,
    recoveryAcceptMs,
    recoveryReadyMs,
    problems,
  };
}

/** Calls each of `tasks` every `everyMs`, without waiting for the previous call; `stop` waits for the calls in flight. */
function startLoad(tasks: (() => Promise<void>)[], everyMs: number): { stop(): Promise<void> } {
  const inFlight = new Set<Promise<void>>();
  const timer = setInterval(() => {
    for (const task of tasks) {
      const call = task().finally(() => inFlight.delete(call));
      inFlight.add(call);
    }
  }, everyMs);
  return {
    stop: async () => {
      clearInterval(timer);
      await Promise.all(inFlight);
    },
  };
}

async function createProject(base: string): Promise<string> {
  const res = await fetch(`${base}/v1/projects`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'load', templateType: 'vanilla-ts' }) });
  if (res.status !== 201) throw new Error(`POST /v1/projects answered ${res.status}: ${await res.text()}`);
  return ((await res.json()) as { id: string }).id;
}

/** A session of the demo project, ready. */
async function readySession(base: string): Promise<string> {
  const res = await fetch(`${base}/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ projectId: DEMO_PROJECT_ID }) });
  if (res.status !== 202) throw new Error(`POST /v1/sessions answered ${res.status}: ${await res.text()}`);
  const { sessionId } = (await res.json()) as { sessionId: string };
  const followed = await followSessionEvents({ baseUrls: [base], sessionId, timeoutMs: 60_000 });
  if (!followed.events.some((e) => e.type === 'ready')) throw new Error(`session ${sessionId} did not get ready: ${followed.events.map((e) => e.type).join(', ')}`);
  return sessionId;
}

interface HeldStream {
  /** When the server ended it; null while it is open. */
  endedAt: number | null;
  /** When it last received anything (an event or a heartbeat). */
  lastDataAt: number;
  close(): void;
}

/** One event stream held open, as a browser tab would, until the server ends it or `close`. */
function openStream(base: string, sessionId: string): HeldStream {
  const abort = new AbortController();
  const stream: HeldStream = { endedAt: null, lastDataAt: Date.now(), close: () => abort.abort() };
  void (async () => {
    try {
      const res = await fetch(`${base}/v1/sessions/${sessionId}/events`, { headers: { accept: 'text/event-stream' }, signal: abort.signal });
      const reader = res.body!.getReader();
      for (;;) {
        if ((await reader.read()).done) break;
        stream.lastDataAt = Date.now();
      }
      stream.endedAt = Date.now();
    } catch {
      // Closed by this side (close), not ended by the server.
    }
  })();
  return stream;
}

/** Sessions of this trial's time whose POST was not accepted and that became active anyway. */
async function countGhosts(cluster: FaultCluster, accepted: Set<string>, since: number, problems: string[]): Promise<number> {
  // Give the sweep its time to act on a row left behind.
  await sleep(3000);
  const { items } = await cluster.store.listSessions({ ownerId: null, liveOnly: false, limit: 500 });
  const rows = items.filter((row) => Date.parse(row.createdAt) >= since && !accepted.has(row.id));
  // Failed before it was queued (or withdrawn) is the only outcome allowed: never a machine, never active.
  const ghosts = rows.filter((row) => row.status !== 'error' || row.expiresAt !== null || row.containerId !== null);
  for (const ghost of ghosts) problems.push(`${ghost.id}: not accepted, yet ${ghost.status}`);
  return ghosts.length;
}

/** Acknowledged writes whose content the database does not hold. */
async function countLostWrites(cluster: FaultCluster, projectId: string, writes: Map<string, string>, problems: string[]): Promise<number> {
  const stored = new Map((await cluster.store.listProjectFiles(projectId, [...writes.keys()])).map((file) => [file.path, file.content]));
  let lost = 0;
  for (const [path, content] of writes) {
    if (stored.get(path) === content) continue;
    lost += 1;
    problems.push(`${path}: acknowledged, not stored`);
  }
  return lost;
}
