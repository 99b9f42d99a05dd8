import { Turns } from './turns';

describe('Turns', () => {
  it('lets `slots` run at once and admits the waiters oldest request first, whatever order they came in', async () => {
    const turns = new Turns(2);
    const first = await turns.take(10);
    const second = await turns.take(20);
    const admitted: number[] = [];
    const waiting = [50, 30, 40].map((order) => turns.take(order).then((turn) => (admitted.push(order), turn)));
    await new Promise((r) => setImmediate(r));
    expect(turns.state).toEqual({ running: 2, waiting: 3 });
    expect(admitted).toEqual([]);

    first.release();
    const third = await waiting[1];
    expect(admitted).toEqual([30]);
    // A newcomer older than the rest still waits for a slot, then goes first.
    const newcomer = turns.take(5).then((turn) => (admitted.push(5), turn));
    second.release();
    third.release();
    const [a, b] = await Promise.all([newcomer, waiting[2]]);
    expect(admitted).toEqual([30, 5, 40]);
    a.release();
    b.release();
    (await waiting[0]).release();
    expect(admitted).toEqual([30, 5, 40, 50]);
    expect(turns.state).toEqual({ running: 0, waiting: 0 });
  });

  it('counts a release once, however often it is called', async () => {
    const turns = new Turns(1);
    const turn = await turns.take(1);
    turn.release();
    turn.release();
    expect(turns.state).toEqual({ running: 0, waiting: 0 });
    const again = await turns.take(2);
    const blocked = turns.take(3);
    turn.release(); // the old turn: must not free the slot `again` holds
    await new Promise((r) => setImmediate(r));
    expect(turns.state).toEqual({ running: 1, waiting: 1 });
    again.release();
    (await blocked).release();
  });

  it('drops a waiter whose signal aborts, with the signal\'s reason', async () => {
    const turns = new Turns(1);
    const held = await turns.take(1);
    const controller = new AbortController();
    const waiting = turns.take(2, controller.signal);
    controller.abort(new Error('shutting down'));
    await expect(waiting).rejects.toThrow('shutting down');
    expect(turns.state).toEqual({ running: 1, waiting: 0 });
    held.release();
    expect(turns.state).toEqual({ running: 0, waiting: 0 });
  });

  it('refuses a number of slots that is not a positive integer', () => {
    expect(() => new Turns(0)).toThrow(/positive integer/);
  });
});
