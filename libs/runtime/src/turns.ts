/** A held turn; `release()` may be called more than once. */
export interface Turn {
  release(): void;
}

interface Waiting {
  order: number;
  admit: () => void;
}

/**
 * Runs take turns: at most `slots` at once in this process, the others
 * waiting, lowest `order` first (equal orders in the order they asked). The
 * provisioner's sessions take turns at running their steps, oldest request
 * first; local machines take turns at starting (StartSlots).
 *
 * A burst of sessions is CPU-bound (the steps' work in this process, the api,
 * Postgres and the machines). Run all at once, they share the cores and all
 * finish near the end of the burst; in turns, the first are ready early and
 * the last no later. A session waiting for a cold machine to boot gives its
 * turn away meanwhile (`ProvisionContext.awayFromTurn`).
 */
export class Turns {
  private running = 0;
  /** Sorted by `order`. */
  private readonly waiting: Waiting[] = [];

  constructor(readonly slots: number) {
    if (!Number.isInteger(slots) || slots < 1) throw new Error(`Turns: slots must be a positive integer, got ${slots}`);
  }

  /** Waits for a turn; `order` ranks the waiters (a session's request time). Rejects with the signal's reason on abort. */
  async take(order: number, signal?: AbortSignal): Promise<Turn> {
    signal?.throwIfAborted();
    if (this.running < this.slots && this.waiting.length === 0) return this.grant();
    await new Promise<void>((resolve, reject) => {
      const entry: Waiting = {
        order,
        admit: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        const at = this.waiting.indexOf(entry);
        if (at >= 0) this.waiting.splice(at, 1);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const at = this.waiting.findIndex((other) => other.order > order);
      this.waiting.splice(at < 0 ? this.waiting.length : at, 0, entry);
    });
    // The slot was handed over by release(): `running` already counts it.
    return this.turn();
  }

  /** Sessions running (holding a turn) and waiting for one, now. */
  get state(): { running: number; waiting: number } {
    return { running: this.running, waiting: this.waiting.length };
  }

  private grant(): Turn {
    this.running += 1;
    return this.turn();
  }

  private turn(): Turn {
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        const next = this.waiting.shift();
        // The slot goes straight to the oldest waiter, so no newcomer slips in before it.
        if (next) next.admit();
        else this.running -= 1;
      },
    };
  }
}
