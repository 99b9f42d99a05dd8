import { backoffDelay, requestText, type Backoff, type Logger } from '@velocity/runtime';
import { errorMessage, sameDiagnostics, type BuildState } from '@velocity/contracts';
import type { BuildTracker } from './build-state';

/**
 * Sends each change of the preview's build state to the api
 * (`POST /v1/machines/:sessionId/diagnostics` with the machine token), which
 * stores it and streams it to the session's clients. Changes that come within
 * `debounceMs` of each other go as one (the last); one request at a time; a
 * failed send is tried again with backoff, always with the newest state. The
 * api's 410 (the session is over) ends it.
 */
export interface DiagnosticsReporterOptions {
  /** `.../v1/machines/<sessionId>/diagnostics` */
  url: string;
  token: string;
  tracker: BuildTracker;
  logger: Logger;
  debounceMs?: number;
}

export interface DiagnosticsReporter {
  start(): void;
  /** Resolves once what changed so far was sent (or given up on); for tests and shutdown. */
  flush(): Promise<void>;
  stop(): void;
}

/** DIAGNOSTICS_URL, else FILES_URL's `/files` replaced by `/diagnostics` (the same api, the same token). */
export function diagnosticsUrlOf(env: NodeJS.ProcessEnv, filesUrl: string): string {
  return env.DIAGNOSTICS_URL || filesUrl.replace(/\/files\/?(\?.*)?$/, '/diagnostics');
}

/** The api's JSON limit on a machine route's body is 64 kB: frames are dropped from the last diagnostics first until the state fits. */
const MAX_BODY_BYTES = 60_000;
/** The pause before sending again after failed sends: 1 s, doubled for each failure in a row, at most 30 s. */
const RESEND_BACKOFF: Backoff = { initialDelayMs: 1000, maxDelayMs: 30_000, jitter: false };

export function createDiagnosticsReporter(options: DiagnosticsReporterOptions): DiagnosticsReporter {
  const { url, token, tracker, logger } = options;
  const debounceMs = options.debounceMs ?? 100;
  /** What the api holds, as far as this machine knows: the first state is the api's (none yet, which reads as clean). */
  let accepted: BuildState['diagnostics'] = [];
  let timer: NodeJS.Timeout | undefined;
  let sending: Promise<void> | undefined;
  let failures = 0;
  let finished = false;
  let unsubscribe: (() => void) | undefined;

  const schedule = (delayMs = debounceMs) => {
    if (finished || timer) return;
    timer = setTimeout(() => {
      timer = undefined;
      void send();
    }, delayMs);
    timer.unref();
  };

  function send(): Promise<void> {
    if (sending) return sending;
    sending = sendLatest().finally(() => {
      sending = undefined;
      // It changed again while this one was on its way.
      if (!finished && !sameDiagnostics(tracker.current.diagnostics, accepted)) schedule(failures > 0 ? backoffDelay(failures, RESEND_BACKOFF) : debounceMs);
    });
    return sending;
  }

  async function sendLatest(): Promise<void> {
    const state = tracker.current;
    if (finished || sameDiagnostics(state.diagnostics, accepted)) return;
    try {
      const res = await requestText(url, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: bodyOf(state),
        signal: AbortSignal.timeout(10_000),
      });
      if (res.status >= 200 && res.status <= 299) {
        accepted = state.diagnostics;
        failures = 0;
        return;
      }
      if (res.status === 410) finished = true;
      // A refused body is not sent again as it is; the next change is.
      if (res.status >= 400 && res.status < 500) accepted = state.diagnostics;
      else failures++;
      logger.warn('diagnostics report refused', { status: res.status, body: res.body.slice(0, 200) });
    } catch (err) {
      failures++;
      logger.warn('diagnostics report failed', { err: errorMessage(err) });
    }
  }

  return {
    start() {
      if (unsubscribe || finished) return;
      unsubscribe = tracker.onChange(() => schedule());
      // What the tracker found before the session was bound (a cold machine's first load).
      if (!sameDiagnostics(tracker.current.diagnostics, accepted)) schedule();
    },
    async flush() {
      clearTimeout(timer);
      timer = undefined;
      await send();
    },
    stop() {
      finished = true;
      clearTimeout(timer);
      unsubscribe?.();
    },
  };
}

/** The state as a body within MAX_BODY_BYTES. */
export function bodyOf(state: BuildState): string {
  let body = JSON.stringify(state);
  const diagnostics = state.diagnostics.map((d) => ({ ...d }));
  for (let i = diagnostics.length - 1; Buffer.byteLength(body) > MAX_BODY_BYTES && i >= 0; i--) {
    delete diagnostics[i].frame;
    body = JSON.stringify({ ...state, diagnostics });
  }
  return body;
}
