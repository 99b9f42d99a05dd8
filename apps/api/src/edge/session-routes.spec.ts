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
  const routes = new SessionRoutes(counted, gone);

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
});
