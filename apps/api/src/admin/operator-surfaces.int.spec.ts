import { randomBytes } from 'node:crypto';
import { ALL_QUEUES, type Config } from '@velocity/contracts';
import { createRedis, stopProcess } from '@velocity/ops';
import { families, sampleValue, samples, testConfig, startTestApi, type TestApi } from '@velocity/testing';
import { freePort } from '@velocity/runtime';

/**
 * The api's operator surfaces on real api processes (Nest's bullmq module cannot
 * load inside Jest), real Postgres and Redis: Bull Board at /admin/queues and
 * /metrics are off (404) without operator credentials, 401 with a challenge for
 * wrong ones, 200 for right ones; /health and /ready; request ids.
 */
interface Api extends TestApi {
  config: Config;
}

async function startApi(overrides: Record<string, string> = {}): Promise<Api> {
  const config = testConfig({ API_PORT: await freePort(), LOG_LEVEL: 'info', ...overrides });
  return { ...(await startTestApi(config)), config };
}

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
const USER = 'ops';
const PASSWORD = 'correct horse battery staple';
const TOKEN = randomBytes(24).toString('base64url');

const get = (url: string, authorization?: string, headers: Record<string, string> = {}) =>
  fetch(url, { headers: { ...(authorization ? { authorization } : {}), ...headers }, redirect: 'manual' });

describe('operator surfaces (api)', () => {
  const redis = createRedis('redis://127.0.0.1:6379');
  const apis: Api[] = [];

  afterAll(async () => {
    await Promise.all(apis.map((api) => stopProcess(api.child)));
    for (const api of apis) {
      const keys = await redis.keys(`${api.config.QUEUE_PREFIX}:*`);
      if (keys.length > 0) await redis.del(...keys);
    }
    redis.disconnect();
  });

  describe('without operator credentials', () => {
    let api: Api;
    beforeAll(async () => {
      api = await startApi();
      apis.push(api);
    }, 40_000);

    it.each(['/admin/queues', '/admin/queues/api/queues', '/metrics'])('%s is off: 404, as if it did not exist', async (path) => {
      for (const authorization of [undefined, basic(USER, PASSWORD), `Bearer ${TOKEN}`]) {
        const res = await get(`${api.base}${path}`, authorization);
        expect(res.status).toBe(404);
        expect(res.headers.get('www-authenticate')).toBeNull();
        expect(await res.json()).toEqual({ statusCode: 404, error: 'Not Found', message: `Cannot GET ${path}` });
      }
      // The same answer as a path that truly does not exist.
      const unknown = await get(`${api.base}/no-such-path`);
      expect(unknown.status).toBe(404);
    });

    it('/health and /ready still answer', async () => {
      expect((await get(`${api.base}/health`)).status).toBe(200);
      const ready = await get(`${api.base}/ready`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toMatchObject({ status: 'ready', checks: { redis: 'ok', postgres: 'ok' }, failing: [] });
    });
  });

  describe('with operator credentials (Basic and Bearer)', () => {
    let api: Api;
    beforeAll(async () => {
      api = await startApi({ OPERATOR_USER: USER, OPERATOR_PASSWORD: PASSWORD, OPERATOR_TOKEN: TOKEN });
      apis.push(api);
    }, 40_000);

    const wrong: [string, string | undefined][] = [
      ['no credentials', undefined],
      ['a wrong password', basic(USER, `${PASSWORD}x`)],
      ['a wrong user', basic('admin', PASSWORD)],
      ['a password prefix', basic(USER, PASSWORD.slice(0, -1))],
      // The last character changed (a random token may already end with the one put in its place).
      ['a wrong token', `Bearer ${TOKEN.slice(0, -1)}${TOKEN.endsWith('x') ? 'y' : 'x'}`],
      ['the password as a token', `Bearer ${PASSWORD}`],
      ['the token as Basic', basic(USER, TOKEN)],
      ['garbage', 'Basic %%%'],
      ['an unknown scheme', `Digest ${TOKEN}`],
    ];

    it.each(['/admin/queues', '/admin/queues/api/queues', '/metrics'])('%s: wrong credentials are 401 with WWW-Authenticate', async (path) => {
      for (const [, authorization] of wrong) {
        const res = await get(`${api.base}${path}`, authorization);
        expect({ authorization, status: res.status }).toEqual({ authorization, status: 401 });
        const challenge = res.headers.get('www-authenticate') ?? '';
        expect(challenge).toContain('Basic realm="velocity-preview operators"');
        expect(challenge).toContain('Bearer realm="velocity-preview operators"');
        expect(await res.json()).toMatchObject({ statusCode: 401, error: 'Unauthorized' });
      }
    });

    it('Bull Board answers operators (Basic or Bearer) and shows every queue under QUEUE_PREFIX', async () => {
      for (const authorization of [basic(USER, PASSWORD), `Bearer ${TOKEN}`]) {
        const page = await get(`${api.base}/admin/queues`, authorization);
        expect(page.status).toBe(200);
        expect(page.headers.get('content-type')).toContain('text/html');
        expect(await page.text()).toContain('<base href="/admin/queues/" />');

        const res = await get(`${api.base}/admin/queues/api/queues?activeQueue=&page=1`, authorization);
        expect(res.status).toBe(200);
        const body = (await res.json()) as { queues: { name: string; description?: string }[] };
        expect(body.queues.map((q) => q.name).sort()).toEqual([...ALL_QUEUES].sort());
        for (const queue of body.queues) expect(queue.description).toBe(`Redis keys ${api.config.QUEUE_PREFIX}:${queue.name}:*`);
      }
      // Its static files are behind the guard too.
      expect((await get(`${api.base}/admin/queues/static/images/logo.svg`)).status).toBe(401);
    });

    it('Bull Board reads the queues of QUEUE_PREFIX: a job added there shows up', async () => {
      const { Queue } = await import('bullmq');
      const queue = new Queue('cleanup', { connection: redis, prefix: api.config.QUEUE_PREFIX });
      await queue.add('expire-session', { sessionId: '00000000-0000-4000-8000-000000000001' }, { jobId: 'board-probe', delay: 3_600_000 });
      const res = await get(`${api.base}/admin/queues/api/queues?activeQueue=cleanup&status=delayed&page=1`, `Bearer ${TOKEN}`);
      const body = (await res.json()) as { queues: { name: string; counts: Record<string, number>; jobs: { id: string }[] }[] };
      const cleanup = body.queues.find((q) => q.name === 'cleanup')!;
      expect(cleanup.counts.delayed).toBe(1);
      expect(cleanup.jobs.map((j) => j.id)).toEqual(['board-probe']);
      await queue.remove('board-probe');

      // An operator action with a JSON body (the api's body parser runs first; Bull Board still gets the body).
      const added = await fetch(`${api.base}/admin/queues/api/queues/cleanup/add`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'expire-session', data: { sessionId: '00000000-0000-4000-8000-000000000002' }, options: { jobId: 'board-added', delay: 3_600_000 } }),
      });
      expect(added.status).toBe(200);
      const job = await queue.getJob('board-added');
      expect(job?.data).toEqual({ sessionId: '00000000-0000-4000-8000-000000000002' });
      await queue.remove('board-added');
      await queue.close();
    });

    it('/metrics has the api families: queue jobs by state, live sessions by status, requests', async () => {
      const res = await get(`${api.base}/metrics`, `Bearer ${TOKEN}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain('text/plain');
      const text = await res.text();
      expect(families(text)).toMatchObject({
        vp_queue_jobs: 'gauge',
        vp_sessions: 'gauge',
        vp_http_request_seconds: 'histogram',
        process_resident_memory_bytes: 'gauge',
      });
      // One gauge per queue and job state, one per live status (no `ended`: that history only grows), each a count.
      const states = ['waiting', 'active', 'delayed', 'failed', 'completed', 'prioritized', 'waiting-children'];
      const queueJobs = samples(text, 'vp_queue_jobs', { app: 'api' });
      expect(queueJobs.map((s) => `${s.labels.queue} ${s.labels.state}`).sort()).toEqual(ALL_QUEUES.flatMap((queue) => states.map((state) => `${queue} ${state}`)).sort());
      const sessions = samples(text, 'vp_sessions', { app: 'api' });
      expect(sessions.map((s) => s.labels.status).sort()).toEqual(['active', 'creating', 'ending', 'queued', 'starting']);
      expect([...queueJobs, ...sessions].filter((s) => !Number.isInteger(s.value) || s.value < 0)).toEqual([]);
      expect(sampleValue(text, 'vp_http_request_seconds_count', { method: 'GET', route: '/health', status: '200' })).toBeGreaterThanOrEqual(1);
      expect(sampleValue(text, 'vp_http_request_seconds_count', { method: 'GET', route: '/metrics', status: '401' })).toBeGreaterThanOrEqual(1);
      expect(samples(text, 'vp_metrics_collect_failures_total')).toEqual([]);
      // Basic works too.
      expect((await get(`${api.base}/metrics`, basic(USER, PASSWORD))).status).toBe(200);
    });

    it('every response carries a request id: a safe x-request-id is kept, anything else replaced', async () => {
      const mine = `spec-${randomBytes(6).toString('hex')}`;
      const kept = await get(`${api.base}/health`, undefined, { 'x-request-id': mine });
      expect(kept.headers.get('x-request-id')).toBe(mine);
      for (const unsafe of ['has space', 'x'.repeat(129), 'a"b', 'semi;colon']) {
        const res = await get(`${api.base}/health`, undefined, { 'x-request-id': unsafe });
        expect(res.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
      }
      const generated = (await get(`${api.base}/v1/sessions/00000000-0000-4000-8000-00000000dead`)).headers.get('x-request-id');
      expect(generated).toMatch(/^[0-9a-f-]{36}$/);
      await waitFor(() => api.output.some((line) => line.includes(generated!)));
      const line = JSON.parse(api.output.find((l) => l.includes(`"requestId":"${generated}"`) && l.includes('"msg":"request"'))!);
      expect(line).toMatchObject({
        app: 'api',
        level: 'info',
        msg: 'request',
        requestId: generated,
        method: 'GET',
        path: '/v1/sessions/00000000-0000-4000-8000-00000000dead',
        sessionId: '00000000-0000-4000-8000-00000000dead',
        status: expect.any(Number),
        ms: expect.any(Number),
      });
    });

    it("Nest's own log lines are JSON lines of the same logger", async () => {
      // Every line the api wrote is JSON with app and level (Nest's start-up lines are at debug, so not here).
      for (const line of api.output) expect(JSON.parse(line)).toMatchObject({ app: 'api', level: expect.any(String), msg: expect.any(String) });
    });
  });

  it('starts at debug level with Nest\'s lines in the JSON format', async () => {
    const api = await startApi({ LOG_LEVEL: 'debug' });
    apis.push(api);
    const nest = api.output.map((l) => JSON.parse(l)).filter((l) => l.context === 'RoutesResolver' || l.context === 'NestApplication');
    expect(nest.length).toBeGreaterThan(0);
    expect(nest[0]).toMatchObject({ app: 'api', level: 'debug', msg: expect.any(String), context: expect.any(String) });
  }, 40_000);
});

async function waitFor(condition: () => boolean, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}
