import { randomUUID } from 'node:crypto';
import { EventLog, createRedis } from '@velocity/ops';
import { PostgresSessionStore, type SessionStore } from '@velocity/session-store';
import { sleep } from '@velocity/contracts';
import { testConfig } from '@velocity/testing';
import { GoneSessions } from '../common/gone-sessions';
import { SessionRoutes } from './session-routes';

describe('SessionRoutes', () => {
  const config = testConfig();
  const redis = createRedis(config.REDIS_URL);
  const events = new EventLog(redis, config.QUEUE_PREFIX, 60);
  const store = new PostgresSessionStore(config.DATABASE_URL);
  let lookups = 0;
  // The real store, counting the reads the edge makes.
  const counted = new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'getSessionByRoute') lookups++;
      return Reflect.get(target, prop, receiver);
    },
  }) as SessionStore;
  const gone = new GoneSessions(events, config);
  const MISSES_PER_MINUTE = 50;
  const routes = new SessionRoutes(counted, gone, { ...config, EDGE_UNKNOWN_ROUTE_CACHE_SECONDS: 1, EDGE_MISSES_PER_MINUTE: MISSES_PER_MINUTE });

  afterAll(async () => {
    gone.onModuleDestroy();
    await store.close();
    redis.disconnect();
  });

  async function activeSession() {
    const project = await store.ensureProject({ id: randomUUID(), name: 'edge test', templateType: 'react' });
    const id = randomUUID();
    await store.createSession({ id, projectId: project.id, tier: 'free', resourceLimits: { cpus: 1, memoryMb: 512 }, status: 'creating' });
    await store.transition(id, 'starting', { containerId: `local-${id}`, containerUrl: 'http://127.0.0.1:9', routeId: id });
    await store.transition(id, 'active', { previewUrl: `http://127.0.0.1/p/${id}/`, ttlSeconds: 60 });
    return id;
  }

  it('looks an active session up once and keeps it', async () => {
    const id = await activeSession();
    lookups = 0;
    for (let i = 0; i < 20; i++) expect(await routes.resolve(id)).toEqual({ kind: 'route', target: 'http://127.0.0.1:9' });
    expect(lookups).toBe(1);
  });

  it('hands out a held route synchronously, without a lookup; nothing for a route it does not hold', async () => {
    const id = await activeSession();
    expect(routes.cached(id)).toBeUndefined();
    await routes.resolve(id);
    lookups = 0;
    expect(routes.cached(id)).toBe('http://127.0.0.1:9');
    expect(lookups).toBe(0);
    routes.forget(id);
    expect(routes.cached(id)).toBeUndefined();
    expect(routes.cached(randomUUID())).toBeUndefined();
  });

  it('drops the route the moment the session ends, and answers gone after', async () => {
    const id = await activeSession();
    await routes.resolve(id);
    expect(routes.isCached(id)).toBe(true);
    await store.transition(id, 'ending');
    await events.append({ type: 'ending', sessionId: id, at: Date.now(), reason: 'stopped' });
    for (let waited = 0; routes.isCached(id) && waited < 2000; waited += 20) await sleep(20);
    expect(routes.isCached(id)).toBe(false);
    expect(await routes.resolve(id)).toEqual({ kind: 'gone' });
  });

  it('answers unknown for a session that does not exist, and does not cache it', async () => {
    const id = randomUUID();
    expect(await routes.resolve(id)).toEqual({ kind: 'unknown' });
    expect(routes.isCached(id)).toBe(false);
  });

  /** Not across a minute boundary: the misses budget is a fixed window. */
  async function awayFromMinuteEnd() {
    const intoMinute = Date.now() % 60_000;
    if (intoMinute > 55_000) await sleep(60_500 - intoMinute);
  }

  it('looks an unknown route id up once while it is remembered (EDGE_UNKNOWN_ROUTE_CACHE_SECONDS), an ended one too', async () => {
    await awayFromMinuteEnd();
    const unknown = randomUUID();
    lookups = 0;
    for (let i = 0; i < 200; i++) expect(await routes.resolve(unknown, '192.0.2.10')).toEqual({ kind: 'unknown' });
    expect(lookups).toBe(1);
    const ended = await activeSession();
    await store.transition(ended, 'ending');
    lookups = 0;
    for (let i = 0; i < 50; i++) expect(await routes.resolve(ended, '192.0.2.10')).toEqual({ kind: 'gone' });
    expect(lookups).toBe(1);
  });

  it('a route id remembered as unknown just before its session got its machine routes once the entry expires (at most the TTL)', async () => {
    await awayFromMinuteEnd();
    const project = await store.ensureProject({ id: randomUUID(), name: 'edge test', templateType: 'react' });
    const id = randomUUID();
    await store.createSession({ id, projectId: project.id, tier: 'free', resourceLimits: { cpus: 1, memoryMb: 512 }, status: 'creating' });
    // Asked for before the machine is recorded (the row has no route yet).
    expect(await routes.resolve(id, '192.0.2.11')).toEqual({ kind: 'unknown' });
    await store.transition(id, 'starting', { containerId: `local-${id}`, containerUrl: 'http://127.0.0.1:9', routeId: id });
    const recordedAt = Date.now();
    // As the provisioner's verification does: asks again every 50 ms until it is routed.
    let found = await routes.resolve(id, '192.0.2.11');
    while (found.kind !== 'route' && Date.now() - recordedAt < 5000) {
      await sleep(50);
      found = await routes.resolve(id, '192.0.2.11');
    }
    expect(found).toEqual({ kind: 'route', target: 'http://127.0.0.1:9' });
    expect(Date.now() - recordedAt).toBeLessThan(1000 + 200);
  });

  it('refuses lookups from an address past EDGE_MISSES_PER_MINUTE without a query; other addresses and known routes are not affected', async () => {
    await awayFromMinuteEnd();
    const active = await activeSession();
    await routes.resolve(active);
    const flooder = '2001:db8:1:2:aaaa::1';
    lookups = 0;
    const answers = [];
    for (let i = 0; i < 500; i++) answers.push(await routes.resolve(randomUUID(), flooder));
    expect(lookups).toBe(MISSES_PER_MINUTE);
    expect(answers.filter((a) => a.kind === 'unknown')).toHaveLength(MISSES_PER_MINUTE);
    const limited = answers.filter((a) => a.kind === 'limited');
    expect(limited).toHaveLength(500 - MISSES_PER_MINUTE);
    for (const a of limited) expect(a).toEqual({ kind: 'limited', retryAfterSeconds: expect.any(Number) });
    expect((limited[0] as { retryAfterSeconds: number }).retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect((limited[0] as { retryAfterSeconds: number }).retryAfterSeconds).toBeLessThanOrEqual(60);
    // Another address of the same /64 shares the budget; a different one has its own.
    expect((await routes.resolve(randomUUID(), '2001:db8:1:2:bbbb::9')).kind).toBe('limited');
    expect((await routes.resolve(randomUUID(), '2001:db8:1:3::1')).kind).toBe('unknown');
    // A live preview it already holds is still served to the limited address.
    expect(await routes.resolve(active, flooder)).toEqual({ kind: 'route', target: 'http://127.0.0.1:9' });
  });
});
