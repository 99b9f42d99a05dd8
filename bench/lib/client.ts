import { performance } from 'node:perf_hooks';
import { DEMO_PROJECT_ID, PROVISION_STEPS, type ProvisionStep } from '@velocity/contracts';
import { openHttp, readText, requestSession } from '@velocity/runtime';

/** Every request the benchmark sent to a handed-out preview URL, and how many answered "Session not found". */
export const urlChecks = { requests: 0, notFound: 0, non200: 0, notFoundUrls: [] as string[] };

/** Counts one answer of a handed-out URL; the body decides "Session not found". */
export function countUrlAnswer(url: string, status: number, body: string): void {
  urlChecks.requests += 1;
  if (status !== 200) urlChecks.non200 += 1;
  if (body.includes('Session not found')) {
    urlChecks.notFound += 1;
    if (urlChecks.notFoundUrls.length < 10) urlChecks.notFoundUrls.push(`${url} → ${status} ${body.slice(0, 120)}`);
  }
}

export interface SessionRun {
  sessionId: string;
  /** Wall clock of the POST (Date.now), to compare with the events' `at`. */
  postedAt: number;
  /** POST → 202. */
  acceptedMs: number;
  /** POST → `ready` received by the client over SSE. */
  readyMs: number;
  /** POST → first 200 from the preview URL (when asked for). */
  firstOkMs?: number;
  /** First `progress started` event − POST. */
  queueWaitMs: number;
  /** `ms` of each step's `done` event (the last attempt's). */
  steps: Partial<Record<ProvisionStep, number>>;
  previewUrl: string;
  /** The session got a machine from the warm pool. */
  pooled?: boolean;
  attempts: number;
  /** Each event's label and `at` (wall clock ms), then the client's own marks: `accepted` and `ready received`. */
  timeline: Array<[string, number]>;
}

/**
 * One session as a browser asks for it: POST /v1/sessions, answered with the
 * session's events stream, until `ready`; with `fetchUrl`, then GET the preview URL until it
 * answers 200 (every answer is counted in `urlChecks`).
 */
export async function runSession(baseUrl: string, options: { fetchUrl: boolean; timeoutMs?: number; projectId?: string }): Promise<SessionRun> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const postedAt = Date.now();
  const t0 = performance.now();
  let acceptedMs = Number.NaN;
  let acceptedAt = 0;
  let readyAt = 0;
  let readyWall = 0;
  // One request: the POST's answer is the session's event stream.
  const followed = await requestSession({
    baseUrls: [baseUrl],
    projectId: options.projectId ?? DEMO_PROJECT_ID,
    timeoutMs,
    onAccepted: () => {
      acceptedMs = performance.now() - t0;
      acceptedAt = Date.now();
    },
    onEvent: (event) => {
      if (event.type === 'ready') {
        readyAt = performance.now();
        readyWall = Date.now();
      }
    },
  });
  const sessionId = followed.sessionId;
  const last = followed.events[followed.events.length - 1];
  if (last?.type !== 'ready') throw new Error(`session ${sessionId} ended with ${JSON.stringify(last)}`);
  const firstStarted = followed.events.find((e) => e.type === 'progress' && e.state === 'started');
  const steps: SessionRun['steps'] = {};
  let attempts = 1;
  for (const event of followed.events) {
    if (event.type !== 'progress') continue;
    attempts = Math.max(attempts, event.attempt);
    if (event.state === 'done' && event.ms !== undefined) steps[event.step] = event.ms;
  }
  const run: SessionRun = {
    sessionId,
    postedAt,
    acceptedMs,
    readyMs: readyAt - t0,
    queueWaitMs: firstStarted ? firstStarted.at - postedAt : Number.NaN,
    steps,
    previewUrl: last.previewUrl,
    pooled: last.pooled ?? false,
    attempts,
    timeline: [
      ['post', postedAt],
      ['accepted', acceptedAt],
      ...followed.events.map((e): [string, number] => [e.type === 'progress' ? `${e.step} ${e.state}` : e.type, e.at]),
      ['ready received', readyWall],
    ],
  };
  if (options.fetchUrl) run.firstOkMs = (await firstOk(last.previewUrl, t0 + timeoutMs)) - t0;
  return run;
}

/** GETs the URL until it answers 200 (as a browser would load it); returns performance.now() of that answer. */
export async function firstOk(url: string, until: number): Promise<number> {
  for (;;) {
    // Node's own client: the benchmark shares the cores with what it measures.
    const res = await openHttp(url, { headers: { accept: 'text/html' }, signal: AbortSignal.timeout(10_000) });
    const text = await readText(res);
    const status = res.statusCode ?? 0;
    countUrlAnswer(url, status, text);
    if (status === 200) return performance.now();
    if (performance.now() > until) throw new Error(`${url} answered ${status} until the deadline: ${text.slice(0, 200)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** GETs a handed-out URL once and counts the answer. */
export async function checkUrl(url: string): Promise<number> {
  const res = await openHttp(url, { headers: { accept: 'text/html' }, signal: AbortSignal.timeout(10_000) });
  countUrlAnswer(url, res.statusCode ?? 0, await readText(res));
  return res.statusCode ?? 0;
}

/** Runs `count` tasks with at most `concurrency` in flight (a closed loop); results in start order. */
export async function pool<T>(count: number, concurrency: number, task: (index: number) => Promise<T>): Promise<T[]> {
  const results: T[] = new Array(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const index = next++;
      results[index] = await task(index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return results;
}

/** DELETE /v1/sessions/:id for each session (202), `concurrency` at a time. */
export async function stopSessions(baseUrl: string, sessionIds: string[], concurrency = 10): Promise<void> {
  await pool(sessionIds.length, concurrency, async (i) => {
    const res = await fetch(`${baseUrl}/v1/sessions/${sessionIds[i]}`, { method: 'DELETE', signal: AbortSignal.timeout(30_000) });
    await res.arrayBuffer();
    if (res.status !== 202 && res.status !== 409) throw new Error(`DELETE session ${sessionIds[i]} answered ${res.status}`);
  });
}

/** Waits until every session reads `ended` (or `error`). */
export async function waitEnded(baseUrl: string, sessionIds: string[], timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let pending = [...sessionIds];
  while (pending.length > 0) {
    const statuses = await pool(pending.length, 10, async (i) => {
      const res = await fetch(`${baseUrl}/v1/sessions/${pending[i]}`, { signal: AbortSignal.timeout(10_000) });
      return ((await res.json()) as { status?: string }).status;
    });
    pending = pending.filter((_, i) => statuses[i] !== 'ended' && statuses[i] !== 'error');
    if (pending.length === 0) return;
    if (Date.now() > deadline) throw new Error(`${pending.length} sessions did not end within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export const STEPS = PROVISION_STEPS;
