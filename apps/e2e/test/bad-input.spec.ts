import { Client } from 'pg';
import { DEMO_PROJECT_ID, loadConfig } from '@velocity/contracts';
import { badInputCases, floodCases, problemWith, sendCase, type BadCase, type Tenant } from '../src/bad-input';
import { sendJson, TEST_JWT_SECRET, testUser, type TestUser } from '@velocity/testing';
import { eventsUntilTerminal, startSystem, type RunningSystem } from '../src/system';

jest.setTimeout(120_000);

/**
 * The bad-input suite: the whole system with auth on (SUPABASE_JWT_SECRET),
 * two users each with a project and a live session made by the real provisioner,
 * then hundreds of malformed, forged, foreign and excessive requests at the running
 * api. Each must get its 4xx with a JSON error that has a message (and names the
 * field where one is at fault); none a 5xx; every process must still run after;
 * and no row may change.
 */
describe('bad input', () => {
  const LIMITS = { QUOTA_FREE_CONCURRENT: '1', RATE_LIMIT_SESSIONS_PER_MINUTE: '10', MAX_FILE_BYTES: '4096' };
  let system: RunningSystem;
  let a: Tenant;
  let b: Tenant;

  beforeAll(async () => {
    system = await startSystem({ SUPABASE_JWT_SECRET: TEST_JWT_SECRET, LOG_LEVEL: 'warn', ...LIMITS });
    const [userA, userB] = [await testUser(TEST_JWT_SECRET), await testUser(TEST_JWT_SECRET)];
    // A previews a project of their own; B previews the demo project and owns a project without a session.
    [a, b] = await Promise.all([
      (async () => {
        const projectId = await newProject(userA);
        return { user: userA, projectId, sessionId: await liveSession(userA, projectId), sessionProjectId: projectId };
      })(),
      (async () => {
        const projectId = await newProject(userB);
        return { user: userB, projectId, sessionId: await liveSession(userB, DEMO_PROJECT_ID), sessionProjectId: DEMO_PROJECT_ID };
      })(),
    ]);
  }, 90_000);

  afterAll(async () => {
    await system?.stop();
  });

  const newProject = async (user: TestUser) => {
    const res = await sendJson(system.baseUrl, 'POST', '/v1/projects', { name: 'bad-input', templateType: 'vanilla-ts' }, user.auth);
    if (res.status !== 201) throw new Error(`POST /v1/projects answered ${res.status}: ${res.text}`);
    return res.body.id as string;
  };
  const liveSession = async (user: TestUser, projectId: string) => {
    const res = await sendJson(system.baseUrl, 'POST', '/v1/sessions', { projectId }, user.auth);
    if (res.status !== 202) throw new Error(`POST /v1/sessions answered ${res.status}: ${res.text}`);
    const { events } = await eventsUntilTerminal(system.baseUrl, res.body.sessionId, 60_000, user.auth);
    if (events.at(-1)?.type !== 'ready') throw new Error(`session ${res.body.sessionId} did not become ready: ${JSON.stringify(events.at(-1))}`);
    return res.body.sessionId as string;
  };

  /** Every row of the three tables (a session's last_activity_at moves whenever its preview is used). */
  async function snapshot(): Promise<Map<string, string>> {
    const client = new Client({ connectionString: system.env.DATABASE_URL });
    await client.connect();
    try {
      const { rows } = await client.query<{ key: string; row: string }>(`
        select 'projects/' || id as key, (to_jsonb(p))::text as row from projects p
        union all select 'project_files/' || id, (to_jsonb(f))::text from project_files f
        union all select 'preview_sessions/' || id, (to_jsonb(s) - 'last_activity_at')::text from preview_sessions s`);
      return new Map(rows.map((r) => [r.key, r.row]));
    } finally {
      await client.end();
    }
  }

  it('answers every malformed, forged, foreign and excessive request with its 4xx, changes no row and keeps every process up', async () => {
    const config = loadConfig(system.env);
    const cases: BadCase[] = await badInputCases({
      jwtSecret: TEST_JWT_SECRET,
      machineTokenSecret: config.MACHINE_TOKEN_SECRET,
      maxFileBytes: config.MAX_FILE_BYTES,
      a,
      b,
    });
    const before = await snapshot();
    const started = Date.now();

    const results: { c: BadCase; status: number; problem: string | null }[] = [];
    const run = async (c: BadCase) => {
      const res = await sendCase(system.baseUrl, c).catch((err: Error) => ({ status: 0, text: `no answer: ${err.message}`, body: undefined, headers: {} }));
      results.push({ c, status: res.status, problem: res.status === 0 ? res.text : problemWith(c, res) });
    };
    for (const c of cases) await run(c);
    // Floods over the quota (both users are at QUOTA_FREE_CONCURRENT=1) and then the rate limit:
    // A one after another, B all at once.
    for (const c of floodCases(a, 30, 'A floods POST /v1/sessions')) await run(c);
    await Promise.all(floodCases(b, 30, 'B floods POST /v1/sessions at once').map(run));

    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    const byStatus = new Map<number, number>();
    for (const r of results) byStatus.set(r.status, (byStatus.get(r.status) ?? 0) + 1);
    const summary = [...byStatus.entries()].sort(([x], [y]) => x - y).map(([s, n]) => `${s}×${n}`).join(', ');
    process.stdout.write(`bad-input: ${results.length} requests: ${summary} (${seconds} s)\n`);

    const problems = results.filter((r) => r.problem !== null).map((r) => `[${r.c.kind}] ${r.c.name}: ${r.problem}`);
    expect(problems).toEqual([]);
    expect(results.length).toBeGreaterThanOrEqual(500);
    // The floods met both limits.
    const floods = results.filter((r) => r.c.kind === 'flood');
    expect(floods.every((r) => r.status === 429)).toBe(true);

    // No row changed, none appeared or went away.
    const after = await snapshot();
    const changed = [...new Set([...before.keys(), ...after.keys()])].filter((key) => before.get(key) !== after.get(key));
    expect(changed.map((key) => ({ key, before: before.get(key) ?? null, after: after.get(key) ?? null }))).toEqual([]);

    // Every process still runs; the api and both previews still answer; nothing was logged as unhandled.
    expect(system.processes.map((p) => ({ exitCode: p.exitCode, signal: p.signalCode }))).toEqual(system.processes.map(() => ({ exitCode: null, signal: null })));
    expect((await fetch(`${system.baseUrl}/health`)).status).toBe(200);
    for (const t of [a, b]) {
      const session = await sendJson(system.baseUrl, 'GET', `/v1/sessions/${t.sessionId}`, undefined, t.user.auth);
      expect(session.body).toMatchObject({ id: t.sessionId, status: 'active' });
      expect((await fetch(session.body.previewUrl)).status).toBe(200);
    }
    expect(system.output.api.filter((line) => /unhandled error|"level":"error"/.test(line))).toEqual([]);
  });
});
