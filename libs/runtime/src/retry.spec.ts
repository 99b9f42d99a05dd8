import { PermanentError } from '@velocity/contracts';
import { backoffDelay, retry, type RetryClock } from './retry';

/** A clock whose pauses move its time on at once: no spec here waits. */
function fakeClock(): RetryClock & { pauses: number[] } {
  let now = 1_000_000;
  const pauses: number[] = [];
  return {
    pauses,
    now: () => now,
    async sleep(ms, signal) {
      signal?.throwIfAborted();
      pauses.push(ms);
      now += ms;
    },
  };
}

/** A call that fails `failures` times with `error`, then answers 'done'. */
function failing(failures: number, error: () => unknown = () => new Error('passing')) {
  const calls: number[] = [];
  const fn = async (attempt: number) => {
    calls.push(attempt);
    if (calls.length <= failures) throw error();
    return 'done';
  };
  return { fn, calls };
}

describe('retry', () => {
  it('tries again after failures, doubling the pause up to its limit, and answers what the call answers', async () => {
    const clock = fakeClock();
    const { fn, calls } = failing(4);
    await expect(retry(fn, { attempts: 5, initialDelayMs: 100, maxDelayMs: 500, jitter: false, clock })).resolves.toBe('done');
    expect(calls).toEqual([1, 2, 3, 4, 5]);
    expect(clock.pauses).toEqual([100, 200, 400, 500]);
  });

  it('gives up after `attempts` tries with the last error', async () => {
    const clock = fakeClock();
    let n = 0;
    const fn = async () => {
      throw new Error(`failure ${++n}`);
    };
    await expect(retry(fn, { attempts: 3, initialDelayMs: 10, clock })).rejects.toThrow('failure 3');
    expect(clock.pauses).toHaveLength(2);
  });

  it('never tries a PermanentError again, even when shouldRetry would', async () => {
    const clock = fakeClock();
    const { fn, calls } = failing(1, () => new PermanentError('no such project'));
    await expect(retry(fn, { attempts: 5, initialDelayMs: 10, shouldRetry: () => true, clock })).rejects.toThrow(PermanentError);
    expect(calls).toEqual([1]);
    expect(clock.pauses).toEqual([]);
  });

  it('tries again only what shouldRetry accepts', async () => {
    const clock = fakeClock();
    const { fn, calls } = failing(3, () => Object.assign(new Error('404'), { status: 404 }));
    await expect(retry(fn, { attempts: 5, initialDelayMs: 10, shouldRetry: (error) => (error as { status: number }).status >= 500, clock })).rejects.toThrow('404');
    expect(calls).toEqual([1]);
  });

  it('starts no try after maxElapsedMs', async () => {
    const clock = fakeClock();
    const { fn, calls } = failing(10);
    // Pauses of 100, 200, 400: the third would end 700 ms after the start, past 500.
    await expect(retry(fn, { attempts: 10, initialDelayMs: 100, jitter: false, maxElapsedMs: 500, clock })).rejects.toThrow('passing');
    expect(clock.pauses).toEqual([100, 200]);
    expect(calls).toEqual([1, 2, 3]);
  });

  it('stops at once when its signal aborts, with the signal’s reason', async () => {
    const clock = fakeClock();
    const controller = new AbortController();
    const calls: number[] = [];
    const fn = async (attempt: number) => {
      calls.push(attempt);
      if (attempt === 2) controller.abort(new Error('shutting down'));
      throw new Error('passing');
    };
    await expect(retry(fn, { attempts: 10, initialDelayMs: 10, signal: controller.signal, clock })).rejects.toThrow('shutting down');
    expect(calls).toEqual([1, 2]);
    await expect(retry(fn, { attempts: 10, initialDelayMs: 10, signal: controller.signal, clock })).rejects.toThrow('shutting down');
    expect(calls).toEqual([1, 2]);
  });

  it('ends a pause when the signal aborts (the real clock)', async () => {
    const controller = new AbortController();
    const started = Date.now();
    const pending = retry(failing(1).fn, { attempts: 2, initialDelayMs: 60_000, signal: controller.signal });
    setTimeout(() => controller.abort(new Error('stop')), 10);
    await expect(pending).rejects.toThrow('stop');
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('waits the pause an error asks for, and reports each retry to onRetry', async () => {
    const clock = fakeClock();
    const { fn } = failing(2, () => Object.assign(new Error('429'), { retryAfterMs: 3000 }));
    const retries: unknown[] = [];
    await retry(fn, {
      attempts: 3,
      initialDelayMs: 10,
      delayOf: (error) => (error as { retryAfterMs?: number }).retryAfterMs,
      onRetry: ({ attempt, delayMs, error }) => retries.push({ attempt, delayMs, message: (error as Error).message }),
      clock,
    });
    expect(clock.pauses).toEqual([3000, 3000]);
    expect(retries).toEqual([
      { attempt: 1, delayMs: 3000, message: '429' },
      { attempt: 2, delayMs: 3000, message: '429' },
    ]);
  });
});

describe('backoffDelay', () => {
  it('doubles from the first pause to the limit; jitter keeps each within half of it and the whole', () => {
    expect([1, 2, 3, 4, 5].map((n) => backoffDelay(n, { initialDelayMs: 250, maxDelayMs: 2000, jitter: false }))).toEqual([250, 500, 1000, 2000, 2000]);
    for (let i = 0; i < 200; i++) {
      const delay = backoffDelay(3, { initialDelayMs: 100 });
      expect(delay).toBeGreaterThanOrEqual(200);
      expect(delay).toBeLessThanOrEqual(400);
    }
  });
});
