import { isRetryable, sleep } from '@velocity/contracts';

/**
 * The one way the system tries a call again. Hand-written rather than a
 * library: p-retry is ESM only, and neither it nor cockatiel both honours a
 * wait the error itself asks for (a server's Retry-After) and takes an
 * injected clock; this is a dozen lines that the preview machine loads too.
 */
export interface RetryOptions {
  /** Tries in all, the first included. */
  attempts: number;
  /** The pause after the first failure, ms; doubled after each further one. */
  initialDelayMs: number;
  /** The longest pause, ms. */
  maxDelayMs?: number;
  /** Each pause drawn from ½ to 1 × its exponential value (the default), so clients that failed together do not come back together. */
  jitter?: boolean;
  /** No try starts later than this many ms after the first one: the last error is thrown instead. */
  maxElapsedMs?: number;
  /** Ends the pauses (and no try starts after it): rejects with its reason. */
  signal?: AbortSignal;
  /** Whether an error is worth another try; a PermanentError never is, whatever this says. */
  shouldRetry?: (error: unknown, attempt: number) => boolean;
  /** The pause an error asks for itself (a server's Retry-After), used instead of the backoff's; undefined: the backoff's. */
  delayOf?: (error: unknown) => number | undefined;
  /** Called before each pause, for logging. */
  onRetry?: (failure: { error: unknown; attempt: number; delayMs: number }) => void;
  /** The time and the pauses; specs pass one that does not wait. */
  clock?: RetryClock;
}

export interface RetryClock {
  now(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

const REAL_CLOCK: RetryClock = { now: () => Date.now(), sleep };

/** Calls `fn` (with the attempt's number, from 1) until it resolves, pausing with exponential backoff between failures; rethrows the last error. */
export async function retry<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const { attempts, signal, shouldRetry = () => true, clock = REAL_CLOCK } = options;
  const started = clock.now();
  for (let attempt = 1; ; attempt++) {
    signal?.throwIfAborted();
    try {
      return await fn(attempt);
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      if (attempt >= attempts || !isRetryable(error) || !shouldRetry(error, attempt)) throw error;
      const delayMs = options.delayOf?.(error) ?? backoffDelay(attempt, options);
      if (options.maxElapsedMs !== undefined && clock.now() + delayMs - started > options.maxElapsedMs) throw error;
      options.onRetry?.({ error, attempt, delayMs });
      await clock.sleep(delayMs, signal);
    }
  }
}

export interface Backoff {
  initialDelayMs: number;
  maxDelayMs?: number;
  jitter?: boolean;
}

/** The pause after `failures` failures in a row (1 or more): `initialDelayMs` doubled for each after the first, at most `maxDelayMs`, with jitter unless it is off. */
export function backoffDelay(failures: number, { initialDelayMs, maxDelayMs = Infinity, jitter = true }: Backoff): number {
  const exponential = Math.min(maxDelayMs, initialDelayMs * 2 ** Math.max(0, failures - 1));
  return jitter ? Math.round(exponential * (0.5 + Math.random() / 2)) : exponential;
}
