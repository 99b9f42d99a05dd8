import { createRedis } from '@velocity/ops';
import { testQueuePrefix, testRedisUrl } from '@velocity/testing';
import { FLY_ACTION_LIMIT, FLY_GET_MACHINE_LIMIT, FlyRateLimiter, flyBucketOf } from '../src/fly-rate-limiter';

const APP = '/apps/previews/machines';

describe('flyBucketOf: which of Fly’s limits a call counts against', () => {
  it.each([
    ['POST', APP, 'previews:create', FLY_ACTION_LIMIT],
    ['GET', `${APP}?metadata.session_id=abc`, 'previews:list', FLY_ACTION_LIMIT],
    ['GET', `${APP}/m1`, 'previews:m1:get', FLY_GET_MACHINE_LIMIT],
    ['GET', `${APP}/m1/wait?state=started&timeout=60`, 'previews:m1:wait', FLY_ACTION_LIMIT],
    ['POST', `${APP}/m1/stop`, 'previews:m1:stop', FLY_ACTION_LIMIT],
    ['POST', `${APP}/m1/start`, 'previews:m1:start', FLY_ACTION_LIMIT],
    ['DELETE', `${APP}/m1?force=true`, 'previews:m1:delete', FLY_ACTION_LIMIT],
  ])('%s %s → %s', (method, path, bucket, limit) => {
    expect(flyBucketOf(method, path)).toEqual({ bucket, limit });
  });
});

describe('FlyRateLimiter (real Redis, shared by two processes’ limiters)', () => {
  const redis = createRedis(testRedisUrl());
  afterAll(() => redis.disconnect());

  it('lets a burst of 3 through per action and machine, then makes the next wait about a second, whichever limiter asks', async () => {
    const prefix = testQueuePrefix();
    const [a, b] = [new FlyRateLimiter(redis, prefix), new FlyRateLimiter(redis, prefix)];
    const waits = [await a.tryAcquire('POST', `${APP}/m1/stop`), await b.tryAcquire('POST', `${APP}/m1/stop`), await a.tryAcquire('POST', `${APP}/m1/stop`)];
    expect(waits).toEqual([0, 0, 0]);
    const fourth = await b.tryAcquire('POST', `${APP}/m1/stop`);
    expect(fourth).toBeGreaterThan(500);
    expect(fourth).toBeLessThanOrEqual(1000);
    // Other actions and other machines have buckets of their own.
    expect(await a.tryAcquire('POST', `${APP}/m2/stop`)).toBe(0);
    expect(await a.tryAcquire('DELETE', `${APP}/m1?force=true`)).toBe(0);
  });

  it('lets 10 Get Machine calls through at once, not 11', async () => {
    const limiter = new FlyRateLimiter(redis, testQueuePrefix());
    const waits: number[] = [];
    for (let i = 0; i < 11; i++) waits.push(await limiter.tryAcquire('GET', `${APP}/m1`));
    expect(waits.slice(0, 10)).toEqual(Array(10).fill(0));
    expect(waits[10]).toBeGreaterThan(0);
  });

  it('a call waiting for its turn stops waiting when its signal aborts', async () => {
    const limiter = new FlyRateLimiter(redis, testQueuePrefix());
    for (let i = 0; i < 3; i++) await limiter.acquire('POST', APP);
    const controller = new AbortController();
    const waiting = limiter.acquire('POST', APP, controller.signal);
    controller.abort(new Error('session cancelled'));
    await expect(waiting).rejects.toThrow('session cancelled');
  });
});
