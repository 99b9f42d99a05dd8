import { Turns } from '@velocity/runtime';

/** Background starts rank after every session's start: orders are a count, far below this. */
const BACKGROUND = Number.MAX_SAFE_INTEGER / 2;

/**
 * At most `size` machines starting at once on this host, the others waiting
 * their turn: a start is some CPU-bound second (Vite loads, the first page is
 * transformed), and twenty started together share the cores and are all
 * ready near the end, where in turns the first are ready early and the last
 * no later. Sessions' machines go before background ones (the warm pool's),
 * each kind in the order it asked.
 */
export class StartSlots {
  private readonly turns: Turns;
  private asked = 0;

  constructor(readonly size: number) {
    this.turns = new Turns(size);
  }

  /** Resolves with the slot's release (idempotent) once a slot is free; rejects if `signal` aborts first. */
  async take(background = false, signal?: AbortSignal): Promise<() => void> {
    this.asked += 1;
    const turn = await this.turns.take(background ? BACKGROUND + this.asked : this.asked, signal);
    return () => turn.release();
  }

  /** Starts that hold a slot, and that wait for one. */
  get counts(): { starting: number; waiting: number } {
    const { running, waiting } = this.turns.state;
    return { starting: running, waiting };
  }
}
