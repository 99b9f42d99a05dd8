import type { ChildProcess } from 'node:child_process';
import { request, type ClientRequest, type IncomingMessage } from 'node:http';
import { Pool } from 'pg';
import { DEMO_PROJECT_ID, sleep, type Config } from '@velocity/contracts';
import { testConfig, startTestApi, sendJson, TEST_JWT_SECRET, testUser, type TestUser } from '@velocity/testing';
import { stopProcess } from '@velocity/ops';
import { freePort } from '@velocity/runtime';

jest.setTimeout(30_000);

/**
 * Per-user bounds on a real api process with auth on: projects a user may own
 * (QUOTA_*_PROJECTS, in the database) and event streams a user may hold open
 * (QUOTA_*_STREAMS, leases in Redis). No provisioner runs: sessions stay queued.
 */
describe('per-user limits of projects and open event streams', () => {
  const LIMITS = { QUOTA_FREE_PROJECTS: 3, QUOTA_PRO_PROJECTS: 5, QUOTA_FREE_STREAMS: 2, QUOTA_PRO_STREAMS: 4 };
  let config: Config;
  let api: ChildProcess;
  let base: string;
  let pool: Pool;
  const open: ClientRequest[] = [];

  beforeAll(async () => {
    config = testConfig({ ...LIMITS, API_PORT: await freePort(), SUPABASE_JWT_SECRET: TEST_JWT_SECRET });
    ({ child: api, base } = await startTestApi(config));
    pool = new Pool({ connectionString: config.DATABASE_URL, max: 2 });
  }, 40_000);

  afterAll(async () => {
    for (const req of open) req.destroy();
    if (api) await stopProcess(api);
    await pool?.end();
  });

  const send = (method: string, path: string, user: TestUser, body?: unknown) => sendJson(base, method, path, body, user.auth);
  const count = async (table: 'projects' | 'preview_sessions', ownerId: string) =>
    (await pool.query(`select count(*)::int as n from ${table} where owner_id = $1`, [ownerId])).rows[0].n as number;

  /** Opens a request that may become a stream; resolves with its answer's head, the body left open (JSON bodies are read). */
  function openStream(method: string, path: string, user: TestUser, body?: unknown): Promise<{ status: number; headers: IncomingMessage['headers']; json?: Record<string, unknown>; req: ClientRequest }> {
    const { hostname, port } = new URL(base);
    return new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const headers = { ...user.auth, accept: 'text/event-stream', ...(payload ? { 'content-type': 'application/json' } : {}) };
      const req = request({ host: hostname, port, method, path, headers, timeout: 10_000 }, (res) => {
        if (String(res.headers['content-type']).startsWith('text/event-stream')) return resolve({ status: res.statusCode!, headers: res.headers, req });
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, json: JSON.parse(text), req }));
      });
      open.push(req);
      req.on('error', reject);
      req.end(payload);
    });
  }

  it("holds a user to the tier's projects, even for concurrent creates: 403 naming QUOTA_FREE_PROJECTS", async () => {
    const user = await testUser(TEST_JWT_SECRET);
    const results = await Promise.all(Array.from({ length: 7 }, (_, i) => send('POST', '/v1/projects', user, { name: `p${i}` })));
    expect(results.filter((r) => r.status === 201)).toHaveLength(3);
    const refused = results.filter((r) => r.status === 403);
    expect(refused).toHaveLength(4);
    for (const res of refused) {
      expect(res.body).toEqual({ statusCode: 403, error: 'Forbidden', message: expect.stringContaining('QUOTA_FREE_PROJECTS'), limit: 'QUOTA_FREE_PROJECTS', max: 3, count: 3 });
    }
    expect(await count('projects', user.id)).toBe(3);
    // Per user, and by tier.
    expect((await send('POST', '/v1/projects', await testUser(TEST_JWT_SECRET), { name: 'other' })).status).toBe(201);
    const pro = await testUser(TEST_JWT_SECRET, 'pro');
    const statuses = [];
    for (let i = 0; i < 6; i++) statuses.push((await send('POST', '/v1/projects', pro, { name: `pro${i}` })).status);
    expect(statuses).toEqual([201, 201, 201, 201, 201, 403]);
  });

  it("holds a user to the tier's open event streams: 429 naming QUOTA_FREE_STREAMS before the stream starts; a closed one frees its place", async () => {
    const user = await testUser(TEST_JWT_SECRET);
    const created = await send('POST', '/v1/sessions', user, { projectId: DEMO_PROJECT_ID });
    expect(created.status).toBe(202);
    const events = `/v1/sessions/${created.body.sessionId}/events`;
    const first = await openStream('GET', events, user);
    const second = await openStream('GET', events, user);
    expect([first.status, second.status]).toEqual([200, 200]);
    const refused = await openStream('GET', events, user);
    expect(refused.status).toBe(429);
    expect(refused.json).toMatchObject({ statusCode: 429, limit: 'QUOTA_FREE_STREAMS', max: 2, live: 2, message: expect.stringContaining('QUOTA_FREE_STREAMS') });
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    // A POST that asks for the stream is refused before a session is made.
    const post = await openStream('POST', '/v1/sessions', user, { projectId: DEMO_PROJECT_ID });
    expect(post.status).toBe(429);
    expect(post.json).toMatchObject({ limit: 'QUOTA_FREE_STREAMS' });
    expect(await count('preview_sessions', user.id)).toBe(1);
    // Another user is not affected.
    const other = await testUser(TEST_JWT_SECRET);
    const theirs = await send('POST', '/v1/sessions', other, { projectId: DEMO_PROJECT_ID });
    expect((await openStream('GET', `/v1/sessions/${theirs.body.sessionId}/events`, other)).status).toBe(200);
    // Closing a stream gives its lease back.
    first.req.destroy();
    let again = await openStream('GET', events, user);
    for (let i = 0; again.status === 429 && i < 40; i++) {
      await sleep(50);
      again = await openStream('GET', events, user);
    }
    expect(again.status).toBe(200);
  });
});
