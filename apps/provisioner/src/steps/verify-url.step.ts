import { BUILD_STATE_HEADER, BUILD_STATE_PATH, DIAGNOSTIC_LIMITS, PermanentError, START_FAILED_HEADER, TimeoutError, buildStateSchema, clampDiagnostic, isProjectRelativePath, pageEntries, previewUrlOf, sleep, walkPageModules, type Diagnostic, type PageWalk } from '@velocity/contracts';
import { whileMachineRuns } from '@velocity/machines';
import { openHttp, readText } from '@velocity/runtime';
import { awayFromTurn, required, type ProvisionContext, type Step } from '../provision-context';

/**
 * The preview URL answers through the same routing path a browser takes: 200
 * and the app's HTML with Vite's client in it. Until this passes, no URL leaves.
 * Then the page's modules are asked for as a browser would, through the same
 * path, and the machine's build state is read: `ready` carries what is broken
 * (`ctx.diagnostics`, empty when the app compiled). A build error does not fail
 * the session: the user fixes code in a running preview. A machine that exits
 * meanwhile fails the step at once, saying how (not when the wait runs out).
 */
export const verifyUrlStep: Step = {
  name: 'verify-url',
  timeoutMs: (config) => config.VERIFY_TIMEOUT_MS,
  async run(ctx, budgetMs) {
    const verify = (signal: AbortSignal) => verifyPage(ctx, budgetMs, signal);
    await (ctx.machine ? whileMachineRuns(ctx.deps.provider, ctx.machine, ctx.signal, verify) : verify(ctx.signal));
  },
};

async function verifyPage(ctx: ProvisionContext, budgetMs: number, signal: AbortSignal): Promise<void> {
  const session = required(ctx.session, 'the session row');
  const url = previewUrlOf(ctx.deps.config, ctx.routeId ?? session.routeId ?? session.id);
  const deadline = Date.now() + budgetMs;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    const probe = await probePage(url, signal);
    if (probe.startFailure !== undefined) throw new PermanentError(`The project's dev server could not start: ${probe.startFailure}`);
    if (probe.html !== undefined) {
      ctx.previewUrl = url;
      ctx.diagnostics = await pageDiagnostics(url, probe.html, Math.max(1, Math.min(WALK_TIMEOUT_MS, deadline - Date.now())), signal);
      return;
    }
    last = probe.problem;
    // A machine still warming up is waited for without holding a turn.
    await awayFromTurn(ctx, () => sleep(50, signal));
  }
  throw new TimeoutError(`${url} to answer 200 with the app's HTML (last: ${last})`, budgetMs);
}

/** The longest the module walk may take; a clean template's takes a few milliseconds. */
const WALK_TIMEOUT_MS = 10_000;
/** Module requests at once: a browser's connections per origin. */
const WALK_CONCURRENCY = 6;

/** The page's HTML when the URL serves the app; otherwise what it did instead. */
async function probePage(url: string, signal: AbortSignal): Promise<{ html?: string; problem: string; startFailure?: string }> {
  try {
    const { target, host } = overSharedConnection(url);
    const res = await openHttp(target, { signal: AbortSignal.any([signal, AbortSignal.timeout(5000)]), headers: { ...host, accept: 'text/html' } });
    const body = await readText(res);
    if (res.headers[START_FAILED_HEADER]) return { problem: 'the dev server could not start', startFailure: startFailureOf(body) };
    if (res.statusCode !== 200) return { problem: `status ${res.statusCode}: ${body.slice(0, 120)}` };
    return body.includes('/@vite/client') ? { html: body, problem: '' } : { problem: 'status 200 without the Vite client script' };
  } catch (err) {
    return { problem: (err as Error).message };
  }
}

/** The machine's reason in a start-failure answer (`{ reason }`), or its body as it is. */
function startFailureOf(body: string): string {
  try {
    const reason = (JSON.parse(body) as { reason?: unknown }).reason;
    if (typeof reason === 'string') return reason.slice(0, 2000);
  } catch {
    // not JSON: said as it is below
  }
  return body.slice(0, 2000);
}

/**
 * What is broken in the page at `url`: its modules walked through the preview's
 * origin (entry scripts and stylesheets, their static imports), then the
 * machine's build state, which the walk brought up to date (Vite records an
 * error before it answers the failing request). A failure the machine does not
 * explain (a 502, a timeout) is added as a diagnostic of its own.
 */
export async function pageDiagnostics(url: string, html: string, timeoutMs: number, signal?: AbortSignal): Promise<Diagnostic[]> {
  const walk: PageWalk = { requested: 0, failed: [], inFlight: new Set() };
  /** The build state each module's answer carried (BUILD_STATE_HEADER; 'unknown' from a machine that sends none). */
  const states = new Set<string>();
  const stop = new AbortController();
  const abort = () => stop.abort();
  signal?.addEventListener('abort', abort, { once: true });
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
  let outcome: PageWalk | 'timeout';
  // What the walk found when it ended: the requests it then cancels are not failures of the page.
  let failed: PageWalk['failed'] = [];
  let waitedFor: string[] = [];
  try {
    outcome = await Promise.race([walkPageModules(pageEntries(html), (path) => fetchModule(url, path, stop.signal, states), { concurrency: WALK_CONCURRENCY }, walk), timedOut]);
    [failed, waitedFor] = [[...walk.failed], [...walk.inFlight]];
  } finally {
    clearTimeout(timer);
    // Only requests still in flight need cancelling; a walk that ended has none (an abort costs an exception).
    if (walk.inFlight.size > 0) stop.abort();
    signal?.removeEventListener('abort', abort);
  }
  if (signal?.aborted) throw signal.reason;
  // Every module loaded and said the build was clean (or the page has none): nothing more to ask, one round trip less on the hot path.
  const clean = failed.length === 0 && outcome !== 'timeout' && [...states].every((state) => state === 'ok');
  const machine = clean ? [] : await readBuildState(url, signal);
  const unexplained = failed.filter((f) => !machine.some((d) => d.file !== undefined && d.file === fileOfPath(f.path)));
  const extra = unexplained.map((f): Diagnostic => {
    const file = fileOfPath(f.path);
    return { kind: 'build', ...(file ? { file } : {}), message: f.status !== undefined ? `${f.path} answered ${f.status}` : `${f.path}: ${f.error}` };
  });
  if (outcome === 'timeout') {
    const waited = new TimeoutError(`the page's modules through ${new URL(url).origin} (${walk.requested} asked, still waiting for ${waitedFor.join(', ') || 'none'})`, timeoutMs);
    extra.push({ kind: 'build', message: waited.message });
  }
  return [...machine, ...extra.map(clampDiagnostic)].slice(0, DIAGNOSTIC_LIMITS.count);
}

/** One module as the page asks for it: a script load (`Sec-Fetch-Dest: script`), so the machine counts a 404 as one. */
async function fetchModule(pageUrl: string, path: string, signal: AbortSignal, states: Set<string>): Promise<{ status: number; body: string }> {
  const { target, host } = overSharedConnection(new URL(path, pageUrl).href);
  const res = await openHttp(target, { signal, headers: { ...host, accept: '*/*', 'sec-fetch-dest': 'script' } });
  const state = res.headers[BUILD_STATE_HEADER];
  states.add(typeof state === 'string' ? state : 'unknown');
  return { status: res.statusCode ?? 0, body: await readText(res) };
}

/** The machine's diagnostics, from its build state on the preview's origin; none when it cannot say (an older machine, another provider's page). */
async function readBuildState(pageUrl: string, signal?: AbortSignal): Promise<Diagnostic[]> {
  try {
    const { target, host } = overSharedConnection(new URL(BUILD_STATE_PATH, pageUrl).href);
    const res = await openHttp(target, {
      signal: signal ? AbortSignal.any([signal, AbortSignal.timeout(5000)]) : AbortSignal.timeout(5000),
      headers: { ...host, accept: 'application/json' },
    });
    const body = await readText(res);
    if (res.statusCode !== 200) return [];
    const parsed = buildStateSchema.safeParse(JSON.parse(body));
    return parsed.success ? parsed.data.diagnostics : [];
  } catch {
    if (signal?.aborted) throw signal.reason;
    return [];
  }
}

/**
 * Where to send a request for `url`, and the Host it names. A `*.localhost` preview is sent to `localhost` with
 * its own Host: every such name is loopback and the edge routes by Host, so all sessions' requests share the
 * agent's kept-alive connections instead of opening one per preview origin. Other URLs go as they are.
 */
function overSharedConnection(url: string): { target: string; host?: { host: string } } {
  const parsed = new URL(url);
  if (parsed.protocol !== 'http:' || !parsed.hostname.endsWith('.localhost')) return { target: url };
  const host = parsed.host;
  parsed.hostname = 'localhost';
  return { target: parsed.href, host: { host } };
}

/** `/src/App.jsx?t=1` → `src/App.jsx`, or undefined when it is no project path. */
function fileOfPath(path: string): string | undefined {
  let file: string;
  try {
    file = decodeURIComponent(path.replace(/[?#].*$/s, '').slice(1));
  } catch {
    return undefined;
  }
  return isProjectRelativePath(file) ? file : undefined;
}
