import { randomUUID } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import Redis from 'ioredis';
import { sleep } from '@velocity/contracts';
import { createRedis } from '@velocity/ops';
import { testConfig } from '@velocity/testing';
import type { AuthUser } from '../auth/auth-user';
import { LOCAL_USER } from '../auth/auth-user';
import { ApiException } from '../common/api-exception';
import { StreamLeases, type StreamLease } from './stream-leases';

/**
 * Open event streams per user, across replicas: each StreamLeases here is one
 * api replica's, all on the real Redis of the test run.
 */
describe('StreamLeases', () => {
  const config = testConfig({ QUOTA_FREE_STREAMS: 3, QUOTA_PRO_STREAMS: 5 });
  const redis = createRedis(config.REDIS_URL);
  const replicas: StreamLeases[] = [];
  const held: StreamLease[] = [];
  const replica = (timing = { ttlMs: 30_000, refreshEveryMs: 10_000, takeTimeoutMs: 2_000 }) => {
    const leases = new StreamLeases(config, redis, timing);
    replicas.push(leases);
    return leases;
  };
  const user = (tier: 'free' | 'pro' = 'free'): AuthUser => ({ id: randomUUID(), tier, local: false });
  const take = async (leases: StreamLeases, who: AuthUser) => {
    const lease = await leases.take(who);
    held.push(lease);
    return lease;
  };
  /** The refusal `take` rejects with. */
  const refusal = (leases: StreamLeases, who: AuthUser) =>
    leases.take(who).then(
      () => null,
      (err: ApiException) => ({ status: err.getStatus(), body: err.getResponse() as Record<string, unknown>, headers: err.headers }),
    );

  afterAll(async () => {
    for (const lease of held) lease.release();
    for (const leases of replicas) leases.onModuleDestroy();
    await sleep(50);
    redis.disconnect();
  });

  it("holds a user to the tier's streams across replicas: 429 naming QUOTA_FREE_STREAMS with Retry-After; closing one frees a place", async () => {
    const [a, b] = [replica(), replica()];
    const alice = user();
    await take(a, alice);
    const second = await take(a, alice);
    await take(b, alice);
    const refused = await refusal(b, alice);
    expect(refused).toEqual({
      status: 429,
      body: expect.objectContaining({ statusCode: 429, error: 'Too Many Requests', limit: 'QUOTA_FREE_STREAMS', max: 3, live: 3 }),
      headers: { 'retry-after': expect.stringMatching(/^\d+$/) },
    });
    expect(refused!.body.message).toContain('QUOTA_FREE_STREAMS');
    // Another user has places of their own; a pro user has the pro limit.
    expect(await refusal(a, user())).toBeNull();
    const bob = user('pro');
    for (let i = 0; i < 5; i++) await take(b, bob);
    expect((await refusal(a, bob))?.body).toMatchObject({ limit: 'QUOTA_PRO_STREAMS', max: 5 });
    second.release();
    second.release();
    expect(await refusal(b, alice)).toBeNull();
    expect((await refusal(a, alice))?.status).toBe(429);
  });

  it('never passes the limit when replicas take leases of one user at once', async () => {
    const [a, b] = [replica(), replica()];
    const carol = user();
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => take(i % 2 ? a : b, carol).then(() => 'granted', () => 'refused')));
    expect(results.filter((r) => r === 'granted')).toHaveLength(3);
  });

  it("a crashed replica's leases stop counting after their TTL; a live replica's are refreshed and keep counting", async () => {
    const timing = { ttlMs: 300, refreshEveryMs: 100, takeTimeoutMs: 2_000 };
    const [crashed, living, other] = [replica(timing), replica(timing), replica(timing)];
    const [dan, erin] = [user(), user()];
    for (let i = 0; i < 3; i++) await crashed.take(dan);
    for (let i = 0; i < 3; i++) await take(living, erin);
    crashed.onModuleDestroy();
    await sleep(700);
    expect(await refusal(other, dan)).toBeNull();
    expect((await refusal(other, erin))?.status).toBe(429);
  });

  it('the local user (auth off) has no limit', async () => {
    const leases = replica();
    for (let i = 0; i < 10; i++) await take(leases, LOCAL_USER);
    expect(leases.heldCount()).toBe(0);
  });

  describe('with a Redis that does not answer', () => {
    let blackHole: Server;
    const sockets: Socket[] = [];
    let silent: Redis;

    beforeAll(async () => {
      // Accepts connections and never answers a byte.
      blackHole = createServer((socket) => sockets.push(socket));
      await new Promise<void>((done) => blackHole.listen(0, '127.0.0.1', done));
      silent = new Redis({ port: (blackHole.address() as AddressInfo).port, host: '127.0.0.1', enableReadyCheck: false, lazyConnect: false });
      silent.on('error', () => undefined);
    });

    afterAll(async () => {
      silent.disconnect();
      for (const socket of sockets) socket.destroy();
      await new Promise((done) => blackHole.close(done));
    });

    it('answers 503 within the bound, naming Redis and the limit it could not check', async () => {
      const leases = new StreamLeases(config, silent, { ttlMs: 30_000, refreshEveryMs: 10_000, takeTimeoutMs: 300 });
      const started = Date.now();
      const refused = await refusal(leases, user());
      leases.onModuleDestroy();
      expect(Date.now() - started).toBeLessThan(1500);
      expect(refused).toEqual({
        status: 503,
        body: expect.objectContaining({ statusCode: 503, dependency: 'redis', message: expect.stringMatching(/^Redis did not answer .*QUOTA_FREE_STREAMS/) }),
        headers: { 'retry-after': '2' },
      });
    });
  });
});
