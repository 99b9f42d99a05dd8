import type { ChildProcess } from 'node:child_process';
import { DEMO_PROJECT_ID, QueueName, expiryJobId, jobs, type Config } from '@velocity/contracts';
import { createRedis, deleteKeysWithPrefix, enqueue, stopProcess } from '@velocity/ops';
import { PostgresSessionStore } from '@velocity/session-store';
import { TcpProxy, scratchDatabase, startTestApi, testConfig } from '@velocity/testing';
import { freePort } from '@velocity/runtime';
import { Queue } from 'bullmq';

/** Longest a request may take while a backing service is cut: its timeout plus room for a loaded machine. */
const BOUND_MS = 3000;

/**
 * A real api process whose Redis and Postgres are reached through proxies that
 * can cut them: every request answers within a bound (503, Retry-After, naming
 * which service), nothing the client was told failed happens later, open event
 * streams end, and the api serves again as soon as the service is back.
 */
describe('the api while Redis or Postgres does not answer', () => {
  let config: Config;
  let api: ChildProcess;
  let base: string;
  let output: string[];
  const redisProxy = new TcpProxy([{ host: '127.0.0.1', port: 6379 }]);
  let pgProxy: TcpProxy;
  const redis = createRedis('redis://127.0.0.1:6379');
  let store: PostgresSessionStore;
  let sessions: Queue;
  // A database of its own: the spec counts every session row, and other specs write theirs at the same time.
  let database: Awaited<ReturnType<typeof scratchDatabase>>;

  beforeAll(async () => {
    const base0 = testConfig();
    database = await scratchDatabase('outages');
    const db = new URL(database.url);
    pgProxy = new TcpProxy([{ host: db.hostname, port: Number(db.port || 5432) }]);
    await Promise.all([redisProxy.listen(), pgProxy.listen()]);
    db.host = `127.0.0.1:${pgProxy.port}`;
    config = testConfig({
      API_PORT: await freePort(),
      REDIS_URL: `redis://127.0.0.1:${redisProxy.port}`,
      DATABASE_URL: db.toString(),
      QUEUE_PREFIX: base0.QUEUE_PREFIX,
      MACHINE_PROVIDER: 'noop',
      REDIS_COMMAND_TIMEOUT_MS: 500,
      DATABASE_TIMEOUT_MS: 1000,
      SSE_HEARTBEAT_MS: 1000,
      LOG_LEVEL: 'warn',
    });
    ({ child: api, base, output } = await startTestApi(config));
    store = new PostgresSessionStore(database.url, { max: 2 });
    sessions = new Queue(QueueName.Sessions, { connection: redis, prefix: config.QUEUE_PREFIX });
  }, 40_000);

  afterEach(() => {
    redisProxy.restore();
    pgProxy.restore();
  });

  afterAll(async () => {
    if (api) await stopProcess(api);
    await sessions?.close();
    await store?.close();
    await Promise.all([redisProxy.close(), pgProxy.close()]);
    await database?.drop();
    await deleteKeysWithPrefix(redis, config.QUEUE_PREFIX);
    redis.disconnect();
  });

  const timed = async (path: string, init: RequestInit = {}) => {
    const started = Date.now();
    const res = await fetch(`${base}${path}`, { ...init, headers: { 'content-type': 'application/json', ...init.headers } });
    const body = res.headers.get('content-type')?.includes('json') ? await res.json() : await res.text();
    return { status: res.status, body, retryAfter: res.headers.get('retry-after'), ms: Date.now() - started };
  };
  const postSession = () => timed('/v1/sessions', { method: 'POST', body: JSON.stringify({ projectId: DEMO_PROJECT_ID }) });
  const projectSessions = async () => (await store.listSessions({ ownerId: null, liveOnly: false, limit: 100 })).items;

  /** Polls `check` until it holds, or fails naming what it waited for. */
  async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 5000) {
    const deadline = Date.now() + timeoutMs;
    while (!(await check().catch(() => false))) {
      if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** A session accepted once the api has its connections back (a test before may have cut one). */
  async function acceptedSession(): Promise<string> {
    let sessionId = '';
    await eventually('the api to accept a session', async () => {
      const post = await postSession();
      if (post.status === 202) sessionId = (post.body as { sessionId: string }).sessionId;
      return post.status === 202;
    });
    return sessionId;
  }

  it('answers 503 with Retry-After within its bound while Redis is cut, and no request answered so becomes a session later', async () => {
    const before = new Set((await projectSessions()).map((s) => s.id));
    redisProxy.cut(60_000);

    const posts = await Promise.all([postSession(), postSession(), postSession()]);
    for (const post of posts) {
      expect(post).toMatchObject({ status: 503, retryAfter: '2', body: { dependency: 'redis', message: expect.stringContaining('Redis did not answer') } });
      expect(post.ms).toBeLessThan(BOUND_MS);
    }
    const events = await timed(`/v1/sessions/${[...before][0] ?? '00000000-0000-4000-8000-000000000000'}/events`);
    expect(events.ms).toBeLessThan(BOUND_MS);
    expect([503, 404]).toContain(events.status);

    // Each POST's row was written before Redis failed it: it is failed, not left for the sweep to enqueue.
    const made = (await projectSessions()).filter((s) => !before.has(s.id));
    expect(made).toHaveLength(3);
    for (const row of made) expect(row).toMatchObject({ status: 'error', errorMessage: 'not queued: Redis did not answer' });

    redisProxy.restore();
    await eventually('a POST to succeed after Redis came back', async () => (await postSession()).status === 202);
    // No job of a failed request reached the queue after the reconnect.
    for (const row of made) expect(await sessions.getJob(row.id)).toBeUndefined();
  }, 30_000);

  it('ends an open event stream when Redis goes, and answers its reconnect 503 until Redis is back', async () => {
    const sessionId = await acceptedSession();
    const stream = await fetch(`${base}/v1/sessions/${sessionId}/events`, { headers: { accept: 'text/event-stream' } });
    expect(stream.status).toBe(200);
    const reader = stream.body!.getReader();
    await reader.read(); // the stream has begun

    redisProxy.cut(60_000);
    const cutAt = Date.now();
    for (;;) {
      const { done } = await reader.read();
      if (done) break;
    }
    expect(Date.now() - cutAt).toBeLessThan(BOUND_MS);
    const again = await timed(`/v1/sessions/${sessionId}/events`);
    expect(again).toMatchObject({ status: 503, body: { dependency: 'redis' } });
    expect(again.ms).toBeLessThan(BOUND_MS);
  }, 30_000);

  it('cancels a provisioning session while Redis is cut: the row says so, and the answer is 202', async () => {
    const sessionId = await acceptedSession();
    redisProxy.cut(60_000);
    const stopped = await timed(`/v1/sessions/${sessionId}`, { method: 'DELETE' });
    expect(stopped).toMatchObject({ status: 202, body: { stop: 'cancelled' } });
    expect(stopped.ms).toBeLessThan(BOUND_MS);
    expect(await store.getSession(sessionId)).toMatchObject({ status: 'error' });
  }, 30_000);

  it('answers 503 to stopping an active session while Redis is cut, and the session is not ended later', async () => {
    const sessionId = await acceptedSession();
    // Made active as the provisioner would, with its expiry job (the api moves it when stopping).
    await sessions.remove(sessionId);
    await store.transition(sessionId, 'creating');
    await store.transition(sessionId, 'starting', { containerId: `local-${sessionId}`, containerUrl: 'http://127.0.0.1:9' });
    const active = (await store.transition(sessionId, 'active', { previewUrl: `http://127.0.0.1:9/`, ttlSeconds: 600 }))!;
    const cleanup = new Queue(QueueName.Cleanup, { connection: redis, prefix: config.QUEUE_PREFIX });
    await enqueue(cleanup, jobs.expireSession(sessionId, active.expiresAt!));

    redisProxy.cut(60_000);
    const stopped = await timed(`/v1/sessions/${sessionId}`, { method: 'DELETE' });
    expect(stopped).toMatchObject({ status: 503, retryAfter: '2', body: { dependency: 'redis' } });
    expect(stopped.ms).toBeLessThan(BOUND_MS);

    redisProxy.restore();
    await acceptedSession();
    // Nothing of the refused stop ran on the reconnect: the expiry job stands, no stop job was added, the row is active.
    expect(await cleanup.getJob(expiryJobId(sessionId))).toBeDefined();
    expect(await cleanup.getJobCounts('waiting', 'active', 'completed')).toEqual({ waiting: 0, active: 0, completed: 0 });
    expect(await store.getSession(sessionId)).toMatchObject({ status: 'active' });
    await cleanup.close();
  }, 30_000);

  it('answers 503 naming the database within its bound while Postgres is cut, and serves again when it is back', async () => {
    const before = new Set((await projectSessions()).map((s) => s.id));
    pgProxy.cut(60_000);
    const [post, list, project] = await Promise.all([postSession(), timed('/v1/sessions'), timed(`/v1/projects/${DEMO_PROJECT_ID}`)]);
    for (const answer of [post, list, project]) {
      expect(answer).toMatchObject({ status: 503, retryAfter: '2', body: { dependency: 'database', message: expect.stringContaining('The database did not answer') } });
      expect(answer.ms).toBeLessThan(BOUND_MS);
    }
    expect(output.join('\n')).not.toMatch(/unhandled error/);

    pgProxy.restore();
    const accepted = await acceptedSession();
    // Besides the session accepted, any row written meanwhile (a POST that Redis, reconnecting from the test before,
    // failed after its insert) is failed: none lives on without its client knowing it.
    const made = (await projectSessions()).filter((s) => !before.has(s.id));
    expect(made.map((s) => s.id)).toContain(accepted);
    for (const row of made.filter((s) => s.id !== accepted)) expect(row).toMatchObject({ status: 'error' });
  }, 30_000);
});
