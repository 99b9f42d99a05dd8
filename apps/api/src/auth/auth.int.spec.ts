import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { Pool } from 'pg';
import { DEMO_PROJECT_ID, createRoutesToken, type Config } from '@velocity/contracts';
import { testConfig, envOf, startTestApi, rawRequest, sendJson, TEST_JWT_SECRET, signToken, testUser, type TestUser } from '@velocity/testing';
import { startApp, stopProcess } from '@velocity/ops';
import { freePort } from '@velocity/runtime';

jest.setTimeout(30_000);

/**
 * Auth, ownership, tiers, quotas and the rate limit on a real api process
 * (Nest's bullmq module is ESM-only, so it cannot load inside Jest) with
 * SUPABASE_JWT_SECRET set. No provisioner runs: sessions stay `queued`, which is
 * live, so they count against the quota.
 */
describe('api with Supabase auth', () => {
  const LIMITS = { QUOTA_FREE_CONCURRENT: 2, QUOTA_PRO_CONCURRENT: 4, RATE_LIMIT_SESSIONS_PER_MINUTE: 6 };
  let config: Config;
  let api: ChildProcess;
  let base: string;
  let pool: Pool;

  beforeAll(async () => {
    const port = await freePort();
    config = testConfig({ ...LIMITS, API_PORT: port, SUPABASE_JWT_SECRET: TEST_JWT_SECRET });
    ({ child: api, base } = await startTestApi(config));
    pool = new Pool({ connectionString: config.DATABASE_URL, max: 2 });
  }, 40_000);

  afterAll(async () => {
    if (api) await stopProcess(api);
    await pool?.end();
  });

  const send = (method: string, path: string, user?: TestUser | { authorization: string }, body?: unknown) =>
    sendJson(base, method, path, body, user ? ('auth' in user ? user.auth : user) : {});
  const newProject = async (user: TestUser) => {
    const res = await send('POST', '/v1/projects', user, { name: 'mine' });
    expect(res.status).toBe(201);
    return res.body.id as string;
  };
  const newSession = (user: TestUser, projectId: string, tier?: string) => send('POST', '/v1/sessions', user, { projectId, ...(tier ? { tier } : {}) });

  it('answers 401 naming authorization on every session and project endpoint without a valid token', async () => {
    const id = randomUUID();
    const calls: [string, string, unknown?][] = [
      ['POST', '/v1/sessions', { projectId: DEMO_PROJECT_ID }],
      ['GET', `/v1/sessions/${id}`],
      ['GET', `/v1/sessions/${id}/events`],
      ['POST', `/v1/sessions/${id}/extend`, { seconds: 60 }],
      ['DELETE', `/v1/sessions/${id}`],
      ['POST', '/v1/projects', { name: 'x' }],
      ['GET', `/v1/projects/${id}`],
      ['GET', `/v1/projects/${id}/files`],
      ['PUT', `/v1/projects/${id}/files/a.js`, { content: 'x' }],
      ['DELETE', `/v1/projects/${id}/files/a.js`],
      // Express matches routes case-insensitively: so does the guard.
      ['GET', `/V1/SESSIONS/${id}`],
    ];
    const expired = await signToken(TEST_JWT_SECRET, { expiresInSeconds: -60 });
    const forged = await signToken('another-secret-another-secret-another-secret', {});
    for (const authorization of [undefined, `Bearer ${expired}`, `Bearer ${forged}`, 'Basic dXNlcjpwYXNz', 'Bearer']) {
      for (const [method, path, body] of calls) {
        const res = await send(method, path, authorization ? { authorization } : undefined, body);
        expect({ method, path, status: res.status }).toEqual({ method, path, status: 401 });
        expect(res.body).toEqual({ statusCode: 401, error: 'Unauthorized', message: expect.stringMatching(/^authorization: /), field: 'authorization' });
        expect(res.headers['www-authenticate']).toMatch(/^Bearer realm="velocity-preview"/);
      }
    }
    // Public: health; machines and routes keep their machine tokens.
    expect((await send('GET', '/health')).status).toBe(200);
    expect((await send('GET', `/v1/machines/${id}/files`)).body).toMatchObject({ statusCode: 401, field: 'authorization' });
    const user = await testUser(TEST_JWT_SECRET);
    expect((await send('GET', `/v1/routes/${id}`, user)).body).toMatchObject({ statusCode: 401, field: 'authorization' });
    const routes = createRoutesToken(randomUUID(), config.MACHINE_TOKEN_SECRET, 60);
    expect((await send('GET', `/v1/routes/${id}`, { authorization: `Bearer ${routes}` })).status).toBe(404);
  });

  it("owns what a user creates; another user's project and session ids answer 404 everywhere", async () => {
    const [alice, bob] = [await testUser(TEST_JWT_SECRET), await testUser(TEST_JWT_SECRET)];
    const project = await newProject(alice);
    expect((await send('PUT', `/v1/projects/${project}/files/src/a.js`, alice, { content: 'a' })).status).toBe(201);
    const created = await newSession(alice, project);
    expect(created.status).toBe(202);
    const session = created.body.sessionId as string;
    const { rows } = await pool.query('select (select owner_id from projects where id = $1) as p, (select owner_id from preview_sessions where id = $2) as s', [project, session]);
    expect(rows[0]).toEqual({ p: alice.id, s: alice.id });

    const notFound = [
      ['GET', `/v1/projects/${project}`],
      ['GET', `/v1/projects/${project}/files`],
      ['PUT', `/v1/projects/${project}/files/src/a.js`, { content: 'bob was here' }],
      ['PUT', `/v1/projects/${project}/files/src/b.js`, { content: 'bob was here' }],
      ['DELETE', `/v1/projects/${project}/files/src/a.js`],
      ['POST', '/v1/sessions', { projectId: project }],
      ['GET', `/v1/sessions/${session}`],
      ['GET', `/v1/sessions/${session}/events`],
      ['POST', `/v1/sessions/${session}/extend`, { seconds: 60 }],
      ['DELETE', `/v1/sessions/${session}`],
    ] as const;
    for (const [method, path, body] of notFound) {
      const res = await send(method, path, bob, body);
      expect({ method, path, status: res.status }).toEqual({ method, path, status: 404 });
      expect(res.body.message).toMatch(/does not exist/);
    }
    // Exactly what an unknown id answers: nothing tells bob the id exists.
    const unknown = randomUUID();
    const [theirs, none] = [await send('GET', `/v1/sessions/${session}`, bob), await send('GET', `/v1/sessions/${unknown}`, bob)];
    expect(theirs.body).toEqual({ ...none.body, message: none.body.message.replace(unknown, session), sessionId: session });

    // Alice still has it all, unchanged.
    expect((await send('GET', `/v1/sessions/${session}`, alice)).body).toMatchObject({ id: session, status: 'queued' });
    expect((await send('GET', `/v1/projects/${project}/files`, alice)).body.files.map((f: { path: string }) => f.path)).toContain('src/a.js');
    const content = await pool.query("select content from project_files where project_id = $1 and file_path = 'src/a.js'", [project]);
    expect(content.rows).toEqual([{ content: 'a' }]);
    expect((await send('DELETE', `/v1/sessions/${session}`, alice)).status).toBe(202);
  });

  it('lets every user preview and read the demo project, and no one change it (403 naming id)', async () => {
    const user = await testUser(TEST_JWT_SECRET);
    const created = await newSession(user, DEMO_PROJECT_ID);
    expect(created.status).toBe(202);
    expect((await send('GET', `/v1/projects/${DEMO_PROJECT_ID}`, user)).status).toBe(200);
    expect((await send('GET', `/v1/projects/${DEMO_PROJECT_ID}/files`, user)).status).toBe(200);
    for (const [method, body] of [['PUT', { content: 'defaced' }], ['DELETE', undefined]] as const) {
      const res = await send(method, `/v1/projects/${DEMO_PROJECT_ID}/files/src/App.jsx`, user, body);
      expect(res.status).toBe(403);
      expect(res.body).toMatchObject({ statusCode: 403, field: 'id', message: expect.stringContaining('demo project') });
    }
    expect((await send('DELETE', `/v1/sessions/${created.body.sessionId}`, user)).status).toBe(202);
  });

  it("refuses a session of a higher tier than the user's with 403 naming tier", async () => {
    const [free, pro] = [await testUser(TEST_JWT_SECRET), await testUser(TEST_JWT_SECRET, 'pro')];
    const refused = await newSession(free, DEMO_PROJECT_ID, 'pro');
    expect(refused.status).toBe(403);
    expect(refused.body).toMatchObject({ statusCode: 403, field: 'tier', message: expect.stringContaining('free') });
    const ok = await newSession(pro, DEMO_PROJECT_ID, 'pro');
    expect(ok.status).toBe(202);
    expect((await send('GET', `/v1/sessions/${ok.body.sessionId}`, pro)).body.tier).toBe('pro');
    // A pro user may still ask for a free session.
    expect((await newSession(pro, DEMO_PROJECT_ID, 'free')).status).toBe(202);
  });

  it('holds each user to their tier’s live sessions at once: 429 with Retry-After naming the limit, even for concurrent requests', async () => {
    const user = await testUser(TEST_JWT_SECRET);
    const results = await Promise.all(Array.from({ length: 5 }, () => newSession(user, DEMO_PROJECT_ID)));
    const accepted = results.filter((r) => r.status === 202);
    const refused = results.filter((r) => r.status === 429);
    expect(accepted).toHaveLength(LIMITS.QUOTA_FREE_CONCURRENT);
    expect(refused).toHaveLength(5 - LIMITS.QUOTA_FREE_CONCURRENT);
    for (const res of refused) {
      expect(res.body).toMatchObject({ statusCode: 429, error: 'Too Many Requests', limit: 'QUOTA_FREE_CONCURRENT', max: 2, live: 2 });
      expect(res.body.message).toContain('QUOTA_FREE_CONCURRENT');
      expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    }
    const { rows } = await pool.query(`select count(*)::int as n from preview_sessions where owner_id = $1`, [user.id]);
    expect(rows[0].n).toBe(2);
    // Stopping one frees its place; another user is not affected at all.
    expect((await send('DELETE', `/v1/sessions/${accepted[0].body.sessionId}`, user)).status).toBe(202);
    expect((await newSession(user, DEMO_PROJECT_ID)).status).toBe(202);
    expect((await newSession(await testUser(TEST_JWT_SECRET), DEMO_PROJECT_ID)).status).toBe(202);
  });

  it('rate-limits POST /v1/sessions per user: 429 with Retry-After naming RATE_LIMIT_SESSIONS_PER_MINUTE', async () => {
    // Not across a minute boundary (a fixed window).
    const intoMinute = Date.now() % 60_000;
    if (intoMinute > 50_000) await new Promise((r) => setTimeout(r, 60_500 - intoMinute));
    const user = await testUser(TEST_JWT_SECRET, 'pro');
    const statuses: number[] = [];
    let last: Awaited<ReturnType<typeof send>> | undefined;
    for (let i = 0; i < 8; i++) {
      last = await newSession(user, DEMO_PROJECT_ID);
      statuses.push(last.status);
    }
    // 4 fit the pro quota, 2 more are refused by it, and from the 7th the rate limit answers.
    expect(statuses).toEqual([202, 202, 202, 202, 429, 429, 429, 429]);
    expect(last!.body).toMatchObject({ statusCode: 429, limit: 'RATE_LIMIT_SESSIONS_PER_MINUTE', max: 6 });
    expect(last!.body.message).toContain('RATE_LIMIT_SESSIONS_PER_MINUTE');
    const retryAfter = Number(last!.headers['retry-after']);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    // Per user: another one is not limited.
    expect((await newSession(await testUser(TEST_JWT_SECRET), DEMO_PROJECT_ID)).status).toBe(202);
  });

  it("lists a user's own projects and sessions a page at a time, newest first, never another user's", async () => {
    const [me, other] = [await testUser(TEST_JWT_SECRET, 'pro'), await testUser(TEST_JWT_SECRET, 'pro')];
    const mine = [await newProject(me), await newProject(me), await newProject(me)];
    await newProject(other);
    // A file written to the first makes it the most recently changed.
    expect((await send('PUT', `/v1/projects/${mine[0]}/files/a.txt`, me, { content: 'a' })).status).toBe(201);
    const first = await send('GET', '/v1/projects?limit=2', me);
    expect(first.status).toBe(200);
    expect(first.body.projects.map((p: { id: string }) => p.id)).toEqual([mine[0], mine[2]]);
    expect(first.body.projects[0]).toEqual({ id: mine[0], name: 'mine', templateType: 'react', createdAt: expect.any(String), updatedAt: expect.any(String) });
    const second = await send('GET', `/v1/projects?limit=2&cursor=${first.body.nextCursor}`, me);
    expect(second.body).toEqual({ projects: [expect.objectContaining({ id: mine[1] })], nextCursor: null });

    const sessions = [(await newSession(me, mine[0])).body.sessionId, (await newSession(me, mine[1])).body.sessionId];
    await newSession(other, DEMO_PROJECT_ID);
    expect((await send('DELETE', `/v1/sessions/${sessions[0]}`, me)).status).toBe(202);
    const live = await send('GET', '/v1/sessions', me);
    expect(live.body).toEqual({ sessions: [expect.objectContaining({ id: sessions[1], projectId: mine[1], status: 'queued' })], nextCursor: null });
    const all = await send('GET', '/v1/sessions?status=all&limit=1', me);
    expect(all.body.sessions.map((s: { id: string }) => s.id)).toEqual([sessions[1]]);
    const rest = await send('GET', `/v1/sessions?status=all&limit=1&cursor=${all.body.nextCursor}`, me);
    expect(rest.body).toEqual({ sessions: [expect.objectContaining({ id: sessions[0] })], nextCursor: null });
  });

  it('refuses a bad listing query, naming the parameter', async () => {
    const user = await testUser(TEST_JWT_SECRET);
    for (const [path, field] of [
      ['/v1/projects?limit=0', 'limit'],
      ['/v1/projects?limit=101', 'limit'],
      ['/v1/projects?limit=two', 'limit'],
      ['/v1/projects?cursor=bm90IGEgY3Vyc29y', 'cursor'],
      ['/v1/sessions?status=dead', 'status'],
      ['/v1/sessions?limit=5&limit=6', 'limit'],
      ['/v1/sessions?page=2', 'query.page'],
    ]) {
      const res = await send('GET', path, user);
      expect({ path, status: res.status, field: res.body.field }).toEqual({ path, status: 400, field });
    }
  });

  it('refuses query parameters, wrong content types and oversized bodies on these routes, naming the field', async () => {
    const user = await testUser(TEST_JWT_SECRET);
    expect((await send('GET', `/v1/sessions/${randomUUID()}?debug=1`, user)).body).toMatchObject({ statusCode: 400, field: 'query.debug' });
    const text = await rawRequest(base, 'POST', '/v1/sessions', { headers: { ...user.auth, 'content-type': 'text/plain' }, body: 'x' });
    expect(text.body).toMatchObject({ statusCode: 415, field: 'content-type' });
    const big = await rawRequest(base, 'POST', '/v1/projects', {
      headers: { ...user.auth, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'x'.repeat(100_000) }),
    });
    expect(big.body).toMatchObject({ statusCode: 413, field: 'body' });
  });
});

describe('api auth configuration', () => {
  it('refuses to start in production without SUPABASE_JWT_SECRET or SUPABASE_JWKS_URL, naming the variable', async () => {
    const config = testConfig({ NODE_ENV: 'production', MACHINE_TOKEN_SECRET: 'a-machine-token-secret-for-tests', API_PORT: await freePort() });
    const env: NodeJS.ProcessEnv = { ...process.env, ...envOf(config) };
    delete env.SUPABASE_JWT_SECRET;
    delete env.SUPABASE_JWKS_URL;
    const api = startApp('api', env, 'pipe');
    let stderr = '';
    api.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => api.once('exit', resolve));
    expect(code).not.toBe(0);
    expect(stderr).toMatch(/SUPABASE_JWT_SECRET is required when NODE_ENV=production/);
  }, 30_000);
});

