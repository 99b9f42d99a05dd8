import type Redis from 'ioredis';
import { createRedis } from '../src/redis';
import { StreamWatcher } from '../src/stream-watcher';
import { testQueuePrefix, testRedisUrl } from '@velocity/testing';

/** Many readers, one blocking connection: against the real Redis. */
describe('StreamWatcher', () => {
  const prefix = testQueuePrefix();
  const key = (name: string) => `${prefix}:watch:${name}`;
  let commands: Redis;
  let watcher: StreamWatcher;

  beforeEach(() => {
    commands = createRedis(testRedisUrl());
    // A long BLOCK: a reader that the XREAD in flight does not cover is only served in time if it interrupts it.
    watcher = new StreamWatcher(commands, { blockMs: 60_000 });
  });
  afterEach(async () => {
    await watcher.close();
    const keys = await commands.keys(`${prefix}:*`);
    if (keys.length) await commands.del(...keys);
    commands.disconnect();
  });

  /** Until the watcher's XREAD is blocked in Redis (CLIENT LIST shows the blocking command). */
  const blocked = async () => {
    for (let i = 0; i < 200; i++) {
      if (String(await commands.client('LIST')).includes('cmd=xread')) return;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error('the watcher never blocked in XREAD');
  };

  it('hands a waiting reader the entries appended after its cursor', async () => {
    const start = await commands.xadd(key('a'), '*', 'e', 'old');
    const read = watcher.read([[key('a'), start!]], 20_000);
    await blocked();
    const id = await commands.xadd(key('a'), '*', 'e', 'new');
    expect(await read).toEqual([[key('a'), [[id, ['e', 'new']]]]]);
  });

  it('serves many readers of different streams over one extra connection, each its own entries', async () => {
    const clientsBefore = Number((await commands.info('clients')).match(/connected_clients:(\d+)/)![1]);
    const names = Array.from({ length: 30 }, (_, i) => `s${i}`);
    const reads = names.map((name) => watcher.read([[key(name), '0']], 20_000));
    await blocked();
    const clientsWaiting = Number((await commands.info('clients')).match(/connected_clients:(\d+)/)![1]);
    const ids = await Promise.all(names.map((name) => commands.xadd(key(name), '*', 'v', name)));
    const replies = await Promise.all(reads);
    replies.forEach((reply, i) => expect(reply).toEqual([[key(names[i]), [[ids[i], ['v', names[i]]]]]]));
    // The watcher's one blocking connection (it may have connected before the first count).
    expect(clientsWaiting - clientsBefore).toBeLessThanOrEqual(1);
  });

  it('interrupts a blocked XREAD for a reader of another stream', async () => {
    const first = watcher.read([[key('first'), '0']], 30_000);
    await blocked();
    const second = watcher.read([[key('second'), '0']], 30_000);
    const id = await commands.xadd(key('second'), '*', 'n', '2');
    // Without the interrupt this waits for the 60 s BLOCK and the test times out.
    expect(await second).toEqual([[key('second'), [[id, ['n', '2']]]]]);
    await commands.xadd(key('first'), '*', 'n', '1');
    expect((await first)?.[0][0]).toBe(key('first'));
  });

  it('gives two readers of one stream only what follows each one\'s own cursor', async () => {
    const a = await commands.xadd(key('shared'), '*', 'n', 'a');
    const b = await commands.xadd(key('shared'), '*', 'n', 'b');
    const fromStart = await watcher.read([[key('shared'), '0']], 20_000);
    expect(fromStart?.[0][1].map(([id]) => id)).toEqual([a, b]);
    const behind = watcher.read([[key('shared'), a!]], 20_000);
    const current = watcher.read([[key('shared'), b!]], 20_000);
    expect((await behind)?.[0][1].map(([id]) => id)).toEqual([b]);
    const c = await commands.xadd(key('shared'), '*', 'n', 'c');
    expect((await current)?.[0][1].map(([id]) => id)).toEqual([c]);
  });

  it('answers a reader of two streams with whichever has entries', async () => {
    const read = watcher.read([[key('files'), '0'], [key('events'), '0']], 20_000);
    await blocked();
    const id = await commands.xadd(key('events'), '*', 'e', 'ended');
    expect(await read).toEqual([[key('events'), [[id, ['e', 'ended']]]]]);
  });

  it('answers null when the timeout passes, and when the signal aborts; neither reader is kept', async () => {
    expect(await watcher.read([[key('quiet'), '0']], 50)).toBeNull();
    const controller = new AbortController();
    const aborted = watcher.read([[key('quiet'), '0']], 20_000, controller.signal);
    controller.abort();
    expect(await aborted).toBeNull();
    expect(watcher.waiting).toBe(0);
  });

  it('ends every pending read with null when closed', async () => {
    const read = watcher.read([[key('closing'), '0']], 20_000);
    await blocked();
    await watcher.close();
    expect(await read).toBeNull();
    expect(await watcher.read([[key('closing'), '0']], 20_000)).toBeNull();
  });
});
