import { BlockingReaders, createRedis } from '../src/redis';
import { testQueuePrefix, testRedisUrl } from './test-env';

/** Reader connections for XREAD BLOCK, reused between SSE clients, against the real Redis. */
describe('BlockingReaders', () => {
  const source = createRedis(testRedisUrl());
  const key = `${testQueuePrefix()}:blocking-readers:${process.pid}`;
  afterAll(async () => {
    await source.del(key);
    source.disconnect();
  });

  const ready = async (reader: ReturnType<BlockingReaders['acquire']>) => {
    await reader.ping();
    return reader;
  };

  /** Until the connection has closed (ioredis reports it after the socket ends). */
  const closed = async (reader: ReturnType<BlockingReaders['acquire']>) => {
    for (let i = 0; i < 100 && reader.status !== 'end'; i++) await new Promise((r) => setTimeout(r, 20));
    return reader.status;
  };

  it('hands back a released idle reader instead of opening another', async () => {
    const readers = new BlockingReaders(source);
    const first = await ready(readers.acquire());
    readers.release(first, false);
    expect(readers.idleCount).toBe(1);
    const again = readers.acquire();
    expect(again).toBe(first);
    expect(readers.idleCount).toBe(0);
    // It still reads.
    await source.xadd(key, '*', 'e', '1');
    expect(await again.xread('COUNT', 1, 'STREAMS', key, '0')).toHaveLength(1);
    readers.release(again, false);
    readers.close();
    expect(await closed(first)).toBe('end');
  });

  it('closes a reader given back in the middle of a blocked read, and the read ends', async () => {
    const readers = new BlockingReaders(source);
    const reader = await ready(readers.acquire());
    const blocked = reader.xread('BLOCK', 10_000, 'STREAMS', `${key}:nothing`, '$').catch((err: Error) => err);
    readers.release(reader, true);
    expect(readers.idleCount).toBe(0);
    expect(await blocked).toBeInstanceOf(Error);
    expect(await closed(reader)).toBe('end');
    // The next client gets a fresh connection that works.
    const next = await ready(readers.acquire());
    expect(next).not.toBe(reader);
    readers.release(next, false);
    readers.close();
  });

  it('gives a lease its reader back after a finished read, and closes it when released mid-read', async () => {
    const readers = new BlockingReaders(source);
    const done = readers.lease();
    await done.read((reader) => reader.ping());
    done.release();
    expect(readers.idleCount).toBe(1);

    const blocked = readers.lease();
    let used: ReturnType<BlockingReaders['acquire']> | undefined;
    const read = blocked.read((reader) => ((used = reader), reader.xread('BLOCK', 10_000, 'STREAMS', `${key}:nothing`, '$'))).catch((err: Error) => err);
    await new Promise((r) => setTimeout(r, 50));
    blocked.release();
    expect(await read).toBeInstanceOf(Error);
    expect(await closed(used!)).toBe('end');
    expect(readers.idleCount).toBe(0);
    readers.close();
  });

  it('keeps no more than its maximum idle, and never a closed one', async () => {
    const readers = new BlockingReaders(source, 2);
    const taken = await Promise.all([1, 2, 3].map(() => ready(readers.acquire())));
    for (const reader of taken) readers.release(reader, false);
    expect(readers.idleCount).toBe(2);
    expect(await closed(taken[2])).toBe('end');
    // One that dropped while idle is not handed out.
    taken[1].disconnect();
    await closed(taken[1]);
    const next = readers.acquire();
    expect(next).not.toBe(taken[1]);
    expect(next).toBe(taken[0]);
    readers.release(next, false);
    readers.close();
  });
});
