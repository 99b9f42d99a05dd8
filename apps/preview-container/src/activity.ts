import { type Logger, requestText } from '@velocity/runtime';
import { errorMessage } from '@velocity/contracts';

/**
 * Tells the api that this preview is in use, so cleanup does not stop it as
 * idle. Activity is any request for the preview and any open HMR (websocket)
 * connection: an open tab counts as use. At most one heartbeat every `everyMs`:
 * `POST <url> { lastActivityAt }` with the machine token, sent only when there
 * was activity since the last one that was accepted.
 */
export interface ActivityTracker {
  /** A request for the preview arrived. */
  touch(): void;
  /** An HMR/websocket connection opened; activity lasts while it is open. */
  connectionOpened(): void;
  connectionClosed(): void;
}

export interface ActivityReporterOptions {
  /** `.../v1/machines/<sessionId>/activity` */
  url: string;
  token: string;
  everyMs: number;
  logger: Logger;
  now?: () => number;
}

export interface ActivityReporter extends ActivityTracker {
  start(): void;
  /** Sends a heartbeat now when there is unreported activity; resolves to whether one was accepted. */
  flush(): Promise<boolean>;
  stop(): void;
  /** The last activity seen (epoch ms), or null. */
  readonly lastActivityAt: number | null;
}

/** The env of the reporter: ACTIVITY_URL (default: FILES_URL's `/files` replaced by `/activity`), ACTIVITY_REPORT_EVERY_MS (default 30000). */
export function activitySettings(env: NodeJS.ProcessEnv, filesUrl: string): { url: string; everyMs: number } {
  const everyMs = Number(env.ACTIVITY_REPORT_EVERY_MS || 30_000);
  if (!Number.isInteger(everyMs) || everyMs <= 0) throw new Error(`Invalid environment: ACTIVITY_REPORT_EVERY_MS must be a positive whole number of ms (got ${env.ACTIVITY_REPORT_EVERY_MS})`);
  const url = env.ACTIVITY_URL || filesUrl.replace(/\/files\/?(\?.*)?$/, '/activity');
  return { url, everyMs };
}

export function createActivityReporter(options: ActivityReporterOptions): ActivityReporter {
  const { url, token, everyMs, logger } = options;
  const now = options.now ?? Date.now;
  let lastActivityAt: number | null = null;
  let lastReportedAt = 0;
  let open = 0;
  let timer: NodeJS.Timeout | undefined;
  let sending: Promise<boolean> | undefined;
  /** Set when the api says the session is over: nothing more to report. */
  let finished = false;

  async function send(): Promise<boolean> {
    if (open > 0) lastActivityAt = now();
    if (finished || lastActivityAt === null || lastActivityAt <= lastReportedAt) return false;
    const at = lastActivityAt;
    try {
      // Node's HTTP client: the api may be on a Unix socket (`http://unix:<socket>:<path>`).
      const res = await requestText(url, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ lastActivityAt: new Date(at).toISOString() }),
        signal: AbortSignal.timeout(Math.min(10_000, everyMs)),
      });
      if (res.status >= 200 && res.status <= 299) {
        lastReportedAt = at;
        return true;
      }
      // 410: the session has ended, and the token with it. A 409 (not active yet) is worth another try.
      if (res.status === 410) finished = true;
      logger.warn('activity report refused', { status: res.status, body: res.body.slice(0, 200) });
    } catch (err) {
      logger.warn('activity report failed', { err: errorMessage(err) });
    }
    return false;
  }

  const reporter: ActivityReporter = {
    touch() {
      lastActivityAt = now();
    },
    connectionOpened() {
      open += 1;
      lastActivityAt = now();
    },
    connectionClosed() {
      open = Math.max(0, open - 1);
      lastActivityAt = now();
    },
    start() {
      if (timer) return;
      timer = setInterval(() => void reporter.flush(), everyMs);
      timer.unref();
    },
    flush() {
      // One heartbeat at a time: a slow api never gets more than one every everyMs.
      sending ??= send().finally(() => {
        sending = undefined;
      });
      return sending;
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
    },
    get lastActivityAt() {
      return lastActivityAt;
    },
  };
  return reporter;
}
