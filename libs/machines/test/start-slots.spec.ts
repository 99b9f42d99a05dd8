import { StartSlots } from '../src/start-slots';

describe('StartSlots', () => {
  it('lets `size` starts run, then the waiting ones in order, sessions before background ones', async () => {
    const slots = new StartSlots(2);
    const order: string[] = [];
    const first = await slots.take();
    const second = await slots.take(true);
    const waiting = [
      slots.take(true).then((release) => (order.push('background'), release)),
      slots.take().then((release) => (order.push('session 1'), release)),
      slots.take().then((release) => (order.push('session 2'), release)),
    ];
    await Promise.resolve();
    expect(slots.counts).toEqual({ starting: 2, waiting: 3 });
    expect(order).toEqual([]);

    first();
    first(); // a release counts once
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual(['session 1']);
    second();
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual(['session 1', 'session 2']);
    (await waiting[1])();
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual(['session 1', 'session 2', 'background']);
    expect(slots.counts).toEqual({ starting: 2, waiting: 0 });
  });

  it('gives up a wait whose signal aborts, and the slot goes to the next', async () => {
    const slots = new StartSlots(1);
    const held = await slots.take();
    const abort = new AbortController();
    const gaveUp = slots.take(false, abort.signal);
    const next = slots.take();
    abort.abort(new Error('the session was stopped'));
    await expect(gaveUp).rejects.toThrow('the session was stopped');
    held();
    const release = await next;
    expect(slots.counts).toEqual({ starting: 1, waiting: 0 });
    release();
    expect(slots.counts).toEqual({ starting: 0, waiting: 0 });
  });

  it('refuses a size that is not a positive integer', () => {
    expect(() => new StartSlots(0)).toThrow('positive integer');
  });
});
