import { randomUUID } from 'node:crypto';
import { testQueuePrefix, testRedisUrl } from '@velocity/testing';
import { compareStreamIds, FileChangeLog, STREAM_START } from './file-changes';
import { fileEtag } from './project-files';
import { createRedis } from '@velocity/ops';

describe('compareStreamIds', () => {
  it.each([
    ['1-0', '1-0', 0],
    ['2-0', '1-5', 1],
    ['1-5', '1-10', -1],
    ['0-0', '1700000000000-0', -1],
    ['17000000000000000000-1', '17000000000000000000-0', 1],
    ['99-0', '100-0', -1],
    ['1700000000000-9', '1700000000000-10', -1],
    ['0', '0-0', 0],
    ['5', '5-1', -1],
    ['007-1', '7-1', 0],
    ['1-2', '1', 1],
  ])('%s vs %s is %d', (a, b, expected) => {
    expect(compareStreamIds(a, b)).toBe(expected);
  });
});

describe('FileChangeLog (real Redis)', () => {
  const redis = createRedis(testRedisUrl());
  const prefix = testQueuePrefix();
  const log = new FileChangeLog(redis, prefix, 60, 5);

  afterAll(async () => {
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });

  const notice = (content: string) => ({ etag: fileEtag({ content }), bytes: Buffer.byteLength(content) });
  const put = (projectId: string, path: string, content: string) => log.append({ type: 'put', projectId, path, ...notice(content), at: Date.now() });

  it('appends changes to one expiring stream per project and reads them back after a cursor', async () => {
    const projectId = randomUUID();
    expect(log.key(projectId)).toBe(`${prefix}:files:${projectId}`);
    expect(await log.cursor(projectId)).toBe(STREAM_START);
    expect(await log.read(projectId)).toEqual([]);
    const a = await put(projectId, 'a.js', '1');
    const b = await log.append({ type: 'delete', projectId, path: 'a.js', at: 1 });
    expect(await log.cursor(projectId)).toBe(b);
    expect((await log.read(projectId)).map((s) => s.id)).toEqual([a, b]);
    expect(await log.read(projectId, a)).toEqual([{ id: b, change: { type: 'delete', projectId, path: 'a.js', at: 1 } }]);
    const ttl = await redis.ttl(log.key(projectId));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(60);
  });

  it('stores notices, never contents: a put of a 1 MiB file is a path, an ETag and a size', async () => {
    const projectId = randomUUID();
    const big = 'x'.repeat(1024 * 1024);
    const change = { type: 'put' as const, projectId, path: 'big.txt', ...notice(big), at: 1 };
    await log.append(change);
    // A content field is not part of a notice: dropped, not stored.
    await log.append({ ...change, content: big } as never);
    const stored = await log.read(projectId);
    expect(stored.map((s) => s.change)).toEqual([change, change]);
    expect(Number(await redis.call('MEMORY', 'USAGE', log.key(projectId)))).toBeLessThan(16 * 1024);
  });

  it('refuses a change that does not match the schema', async () => {
    const ok = notice('a');
    await expect(log.append({ type: 'put', projectId: 'nope', path: 'a', ...ok, at: 1 })).rejects.toThrow();
    await expect(log.append({ type: 'put', projectId: randomUUID(), path: 'a', etag: 'abc', bytes: 1, at: 1 })).rejects.toThrow(/SHA-256/);
    await expect(log.append({ type: 'put', projectId: randomUUID(), path: 'a', content: 'a', at: 1 } as never)).rejects.toThrow();
    await expect(log.append({ type: 'batch', projectId: randomUUID(), write: [{ path: 'a', etag: ok.etag, bytes: -1 }], delete: [], at: 1 })).rejects.toThrow();
    await expect(log.append({ type: 'rename', projectId: randomUUID(), path: 'a', at: 1 } as never)).rejects.toThrow();
  });

  it('says a cursor missed changes only when changes after it were trimmed', async () => {
    const projectId = randomUUID();
    expect(await log.missedSince(projectId, STREAM_START)).toBe(false);
    const first = await put(projectId, 'a', '1');
    expect(await log.missedSince(projectId, STREAM_START)).toBe(false);
    expect(await log.missedSince(projectId, first)).toBe(false);
    const ids = [first];
    for (let i = 2; i <= 8; i++) ids.push(await put(projectId, 'a', String(i)));
    await redis.xtrim(log.key(projectId), 'MAXLEN', 3);
    const kept = (await log.read(projectId)).map((s) => s.id);
    expect(kept).toEqual(ids.slice(-3));
    expect(await log.missedSince(projectId, STREAM_START)).toBe(true);
    expect(await log.missedSince(projectId, first)).toBe(true);
    expect(await log.missedSince(projectId, kept[0])).toBe(false);
    expect(await log.missedSince(projectId, ids.at(-1)!)).toBe(false);
    await redis.xtrim(log.key(projectId), 'MAXLEN', 0);
    expect(await log.missedSince(projectId, ids.at(-1)!)).toBe(false);
    expect(await log.missedSince(projectId, kept[0])).toBe(true);
  });
});
