/**
 * At most `size` machines starting at once on this host, the others waiting
 * their turn: a start is some CPU-bound second (Vite loads, the first page is
 * transformed), and twenty started together share the cores and are all
 * ready near the end, where in turns the first are ready early and the last
 * no later. Sessions' machines go before background ones (the warm pool's),
 * each kind in the order it asked.
 */
export class StartSlots {
  private used = 0;
  private readonly waiting: { foreground: Array<() => void>; background: Array<() => void> } = { foreground: [], background: [] };

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1) throw new Error(`StartSlots: size must be a positive integer, not ${size}`);
  }

  /** Resolves with the slot's release (idempotent) once a slot is free; rejects if `signal` aborts first. */
  take(background = false, signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted();
    if (this.used < this.size) return Promise.resolve(this.hold());
    const queue = background ? this.waiting.background : this.waiting.foreground;
    return new Promise((resolve, reject) => {
      const grant = () => {
        signal?.removeEventListener('abort', abort);
        resolve(this.hold());
      };
      const abort = () => {
        const at = queue.indexOf(grant);
        if (at >= 0) queue.splice(at, 1);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', abort, { once: true });
      queue.push(grant);
    });
  }

  /** Starts that hold a slot, and that wait for one. */
  get counts(): { starting: number; waiting: number } {
    return { starting: this.used, waiting: this.waiting.foreground.length + this.waiting.background.length };
  }

  private hold(): () => void {
    this.used += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used -= 1;
      (this.waiting.foreground.shift() ?? this.waiting.background.shift())?.();
    };
  }
}
