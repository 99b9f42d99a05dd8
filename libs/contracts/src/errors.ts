/**
 * Errors that say whether trying again can help. Workers retry transient errors
 * with backoff and fail permanent ones at once.
 */
export class PermanentError extends Error {
  readonly retryable = false;
  constructor(message: string) {
    super(message);
    this.name = 'PermanentError';
  }
}

export class TimeoutError extends Error {
  readonly retryable = true;
  constructor(readonly waitedFor: string, readonly ms: number) {
    super(`Timed out after ${ms} ms waiting for ${waitedFor}`);
    this.name = 'TimeoutError';
  }
}

/**
 * The exit code of a preview machine whose start failed for the service's
 * reason (its files could not be fetched, its own code failed), not the
 * project's: a new machine may start. Any other code, during start, is the
 * project's doing (EX_TEMPFAIL of sysexits.h: "try again later").
 */
export const MACHINE_RETRY_EXIT_CODE = 75;

export function isRetryable(error: unknown): boolean {
  return !(error instanceof PermanentError);
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Rejects with a TimeoutError naming what was awaited when `promise` takes longer than `ms`. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, waitedFor: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(waitedFor, ms)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
