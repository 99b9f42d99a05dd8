import { randomUUID } from 'node:crypto';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createSessionStore } from '../src/create-session-store';
import { PostgresSessionStore } from '../src/postgres-session-store';
import { SupabaseSessionStore } from '../src/supabase-session-store';
import { ConfigError, loadConfig } from '@velocity/contracts';
import { startPostgrestRecorder, type PostgrestRecorder, type PostgrestRequest, sessionStoreContract, testDatabaseUrl } from '@velocity/testing';

/**
 * The Supabase adapter. Its requests go to a local recorder at Supabase's REST
 * path that answers them from the real test database (postgrest-recorder.ts):
 * the whole contract suite runs through it, and the requests themselves are
 * checked against PostgREST's documented format. Against a real Supabase
 * project the contract runs too, when SUPABASE_URL is set (see the end).
 */
const SERVICE_KEY = 'test-service-role-key.' + randomUUID();

let recorder: PostgrestRecorder;
const recorderReady = startPostgrestRecorder(testDatabaseUrl(), SERVICE_KEY).then((r) => (recorder = r));

afterAll(async () => {
  await (await recorderReady).close();
});

sessionStoreContract('SupabaseSessionStore (PostgREST requests answered from the test database)', async () => {
  await recorderReady;
  return new SupabaseSessionStore({ url: recorder.url, serviceRoleKey: SERVICE_KEY });
});

describe('SupabaseSessionStore: requests in PostgREST’s documented format', () => {
  let store: SupabaseSessionStore;
  let postgres: PostgresSessionStore;

  beforeAll(async () => {
    await recorderReady;
    store = new SupabaseSessionStore({ url: recorder.url, serviceRoleKey: SERVICE_KEY });
    postgres = new PostgresSessionStore(testDatabaseUrl());
  });

  afterAll(async () => {
    await store.close();
    await postgres.close();
  });

  /** The requests `run` made, after checking what every request must carry. */
  async function requestsOf(run: () => Promise<unknown>): Promise<PostgrestRequest[]> {
    const start = recorder.requests.length;
    await run();
    const made = recorder.requests.slice(start);
    for (const req of made) {
      // Supabase's gateway takes the key as `apikey`; PostgREST reads the role from the bearer JWT.
      expect(req.headers.apikey).toBe(SERVICE_KEY);
      expect(req.headers.authorization).toBe(`Bearer ${SERVICE_KEY}`);
      // "Schemas": Accept-Profile selects the schema for GET/HEAD, Content-Profile for POST/PATCH/PUT/DELETE.
      if (req.method === 'GET') {
        expect(req.headers['accept-profile']).toBe('public');
        expect(req.body).toBeUndefined();
      } else {
        expect(req.headers['content-profile']).toBe('public');
        expect(req.headers['content-type']).toMatch(/^application\/json/);
      }
      expect(req.status).toBeLessThan(400);
    }
    return made;
  }

  async function oneRequest(run: () => Promise<unknown>): Promise<PostgrestRequest> {
    const made = await requestsOf(run);
    expect(made).toHaveLength(1);
    return made[0];
  }

  const query = (req: PostgrestRequest) => Object.fromEntries(req.query);
  const newProject = () => postgres.ensureProject({ id: randomUUID(), name: 'Format', templateType: 'react' });
  async function newSession() {
    const project = await newProject();
    return postgres.createSession({ id: randomUUID(), projectId: project.id, tier: 'free', resourceLimits: { cpus: 1, memoryMb: 512 }, status: 'creating' });
  }

  // "Functions as RPC": POST /rpc/<function> with a JSON object whose keys are the argument names.
  describe('writes are SQL functions called by RPC', () => {
    it('ensureProject: POST /rest/v1/rpc/vp_ensure_project {p_id, p_name, p_template_type}', async () => {
      const id = randomUUID();
      const req = await oneRequest(() => store.ensureProject({ id, name: 'Mine', templateType: 'vue' }));
      expect(req.method).toBe('POST');
      expect(req.path).toBe('/rest/v1/rpc/vp_ensure_project');
      expect(req.body).toEqual({ p_id: id, p_name: 'Mine', p_template_type: 'vue' });
      expect(await postgres.getProject(id)).toMatchObject({ id, name: 'Mine', templateType: 'vue' });
    });

    it('seedProjectFiles: p_files is a JSON array of {path, content} (and encoding: base64 for bytes)', async () => {
      const project = await newProject();
      const files = [{ path: 'index.html', content: '<h1>héllo</h1>' }, { path: 'a.png', content: 'AP8=', encoding: 'base64' as const }];
      const req = await oneRequest(() => store.seedProjectFiles(project.id, files));
      expect(req.path).toBe('/rest/v1/rpc/vp_seed_project_files');
      expect(req.body).toEqual({ p_project_id: project.id, p_files: files });
    });

    it('createSession: p_resource_limits is a JSON object', async () => {
      const project = await newProject();
      const id = randomUUID();
      const req = await oneRequest(() =>
        store.createSession({ id, projectId: project.id, tier: 'pro', resourceLimits: { cpus: 2, memoryMb: 1024 }, status: 'queued' }),
      );
      expect(req.path).toBe('/rest/v1/rpc/vp_create_session');
      expect(req.body).toEqual({ p_id: id, p_project_id: project.id, p_tier: 'pro', p_resource_limits: { cpus: 2, memoryMb: 1024 }, p_status: 'queued' });
    });

    it('transition: p_from is a JSON array of statuses, p_patch a JSON object with snake_case keys', async () => {
      const session = await newSession();
      const req = await oneRequest(() => store.transition(session.id, 'starting', { containerId: 'm-1', containerUrl: 'http://127.0.0.1:1', ttlSeconds: 60 }));
      expect(req.path).toBe('/rest/v1/rpc/vp_transition_session');
      expect(req.body).toEqual({
        p_id: session.id,
        p_from: ['creating', 'starting'],
        p_to: 'starting',
        p_patch: { container_id: 'm-1', container_url: 'http://127.0.0.1:1', ttl_seconds: 60 },
      });
      expect((await postgres.getSession(session.id))?.containerId).toBe('m-1');
    });

    it('the cleanup statements are functions too, with ISO timestamps and numbers as JSON values', async () => {
      const session = await newSession();
      const at = new Date('2026-01-02T03:04:05.678Z');
      const cases: [string, () => Promise<unknown>, Record<string, unknown>][] = [
        ['vp_list_expired_sessions', () => store.listExpiredSessions(at, 5), { p_now: at.toISOString(), p_limit: 5 }],
        ['vp_list_idle_sessions', () => store.listIdleSessions('pro', at, 7), { p_tier: 'pro', p_idle_since: at.toISOString(), p_limit: 7 }],
        ['vp_fail_stuck_session', () => store.failStuckSession(session.id, at), { p_id: session.id, p_created_before: at.toISOString() }],
        [
          'vp_list_provisioning_sessions',
          () => store.listProvisioningSessions(at, 3, { createdAt: at.toISOString(), id: session.id }),
          { p_created_after: at.toISOString(), p_limit: 3, p_cursor_created_at: at.toISOString(), p_cursor_id: session.id },
        ],
        ['vp_list_provisioning_sessions', () => store.listProvisioningSessions(at, 3), { p_created_after: at.toISOString(), p_limit: 3, p_cursor_created_at: null, p_cursor_id: null }],
        ['vp_record_activity', () => store.recordActivity(session.id, at), { p_id: session.id, p_at: at.toISOString() }],
        ['vp_extend_session', () => store.extendSession(session.id, 60, 3600), { p_id: session.id, p_seconds: 60, p_max_duration_seconds: 3600 }],
        ['vp_claim_stale_ending', () => store.claimStaleEnding(session.id, at), { p_id: session.id, p_updated_before: at.toISOString() }],
      ];
      for (const [fn, run, body] of cases) {
        const req = await oneRequest(run);
        expect({ method: req.method, path: req.path, body: req.body }).toEqual({ method: 'POST', path: `/rest/v1/rpc/${fn}`, body });
      }
    });

    it('countLiveSessions: one RPC without arguments, the same counts as the Postgres adapter', async () => {
      await newSession();
      const req = await oneRequest(async () => expect((await store.countLiveSessions()).creating).toBeGreaterThanOrEqual(1));
      // Other test files share the database and may add sessions between two reads: compare until a quiet moment.
      const sorted = (counts: object) => JSON.stringify(Object.entries(counts).sort());
      let same = false;
      for (let i = 0; i < 10 && !same; i++) same = sorted(await store.countLiveSessions()) === sorted(await postgres.countLiveSessions());
      expect(same).toBe(true);
      expect({ method: req.method, path: req.path, body: req.body }).toEqual({ method: 'POST', path: '/rest/v1/rpc/vp_count_live_sessions', body: {} });
    });

    it('project files: a change and the list of paths, by RPC', async () => {
      const project = await newProject();
      const limits = { maxFiles: 10, maxFileBytes: 1000, maxProjectBytes: 5000 };
      // Bytes travel as base64 text: JSON has no bytes, and PostgREST would read a bytea argument only as `\x<hex>`.
      const change = await oneRequest(() =>
        store.applyProjectFiles(project.id, { write: [{ path: 'src/a.js', content: 'a' }, { path: 'a.png', content: 'iVBORw==', encoding: 'base64' }], delete: [], expected: { 'src/a.js': '*' } }, limits),
      );
      expect(change.path).toBe('/rest/v1/rpc/vp_apply_project_files');
      expect(change.body).toEqual({
        p_project_id: project.id,
        p_writes: [
          { path: 'src/a.js', content: 'a' },
          { path: 'a.png', content: 'iVBORw==', encoding: 'base64' },
        ],
        p_deletes: [],
        p_expected: { 'src/a.js': '*' },
        p_max_files: 10,
        p_max_file_bytes: 1000,
        p_max_project_bytes: 5000,
      });
      const list = await oneRequest(() => store.listProjectFilePaths(project.id));
      expect(list.path).toBe('/rest/v1/rpc/vp_list_project_file_paths');
      expect(list.body).toEqual({ p_project_id: project.id });
    });
  });

  // "Tables and Views": GET /<table>?select=<columns>&<column>=<operator>.<value>&order=<column>.<asc|desc>&limit=<n>.
  describe('simple reads are selects with horizontal filters', () => {
    it('getSession: GET /rest/v1/preview_sessions?select=*&id=eq.<uuid>', async () => {
      const session = await newSession();
      const req = await oneRequest(() => store.getSession(session.id));
      expect(req.method).toBe('GET');
      expect(req.path).toBe('/rest/v1/preview_sessions');
      expect(query(req)).toEqual({ select: '*', id: `eq.${session.id}` });
    });

    it('getProject: GET /rest/v1/projects?select=*&id=eq.<uuid>', async () => {
      const project = await newProject();
      const req = await oneRequest(() => store.getProject(project.id));
      expect(req.path).toBe('/rest/v1/projects');
      expect(query(req)).toEqual({ select: '*', id: `eq.${project.id}` });
    });

    it('an invalid id makes no request at all', async () => {
      expect(await requestsOf(() => store.getSession("1' or '1'='1"))).toEqual([]);
      expect(await requestsOf(() => store.getProject('not-a-uuid'))).toEqual([]);
    });

    it('listStuckSessions: status=in.(…), created_at=lt.<iso>, order by created_at then id, limit', async () => {
      const before = new Date();
      const req = await oneRequest(() => store.listStuckSessions(before, 25));
      expect(req.path).toBe('/rest/v1/preview_sessions');
      expect(query(req)).toEqual({
        select: '*',
        status: 'in.(queued,creating,starting)',
        created_at: `lt.${before.toISOString()}`,
        order: 'created_at.asc,id.asc',
        limit: '25',
      });
    });

    it('listActiveSessions and listStaleEndingSessions: eq, gt and lt filters', async () => {
      const after = randomUUID();
      const active = await oneRequest(() => store.listActiveSessions(10, after));
      expect(query(active)).toEqual({ select: '*', status: 'eq.active', id: `gt.${after}`, order: 'id.asc', limit: '10' });
      const at = new Date();
      const ending = await oneRequest(() => store.listStaleEndingSessions(at, 4));
      expect(query(ending)).toEqual({ select: '*', status: 'eq.ending', updated_at: `lt.${at.toISOString()}`, order: 'updated_at.asc', limit: '4' });
    });

    it('getSessionsByIds: id=in.(<uuid>,<uuid>), invalid ids left out', async () => {
      const [a, b] = [await newSession(), await newSession()];
      const req = await oneRequest(() => store.getSessionsByIds([a.id, 'nope', b.id, a.id]));
      expect(query(req)).toEqual({ select: '*', id: `in.(${a.id},${b.id})` });
    });

    it('listProjectFiles: vertical filter on three columns, ordered, paged with limit and offset; bytea read from its hex form', async () => {
      const project = await newProject();
      const png = { path: 'c.png', content: 'AAEC/w==', encoding: 'base64' as const };
      await postgres.seedProjectFiles(project.id, [{ path: 'b', content: '2' }, { path: 'a', content: '1' }, png]);
      const req = await oneRequest(async () =>
        expect(await store.listProjectFiles(project.id)).toEqual([{ path: 'a', content: '1' }, { path: 'b', content: '2' }, png]),
      );
      expect(req.path).toBe('/rest/v1/project_files');
      expect(query(req)).toEqual({ select: 'file_path,content,content_bytes', project_id: `eq.${project.id}`, order: 'file_path.asc', offset: '0', limit: '1000' });
    });

    it('hasProjectFiles: one id at most', async () => {
      const project = await newProject();
      const req = await oneRequest(() => store.hasProjectFiles(project.id));
      expect(query(req)).toEqual({ select: 'id', project_id: `eq.${project.id}`, limit: '1' });
    });
  });

  // "Prefer Header": return=representation makes an insert answer the inserted rows.
  it('createProject: POST /rest/v1/projects?select=* with Prefer: return=representation', async () => {
    let created: Awaited<ReturnType<SupabaseSessionStore['createProject']>> | undefined;
    const req = await oneRequest(async () => (created = await store.createProject({ name: 'Inserted', templateType: 'svelte' })));
    expect(req.method).toBe('POST');
    expect(req.path).toBe('/rest/v1/projects');
    expect(query(req)).toEqual({ select: '*' });
    expect(String(req.headers.prefer)).toMatch(/(^|,\s*)return=representation(,|$)/);
    expect(req.body).toEqual({ name: 'Inserted', template_type: 'svelte', owner_id: null });
    expect(await postgres.getProject(created!.id)).toEqual(created);
  });

  it('an error raised in SQL reaches the caller with the database’s message', async () => {
    const missing = randomUUID();
    const start = recorder.requests.length;
    await expect(store.seedProjectFiles(missing, [{ path: 'a', content: 'b' }])).rejects.toThrow(`project ${missing} does not exist`);
    expect(recorder.requests[start].status).toBe(400);
  });

  it('a wrong key is refused (401) and the call fails', async () => {
    const wrong = new SupabaseSessionStore({ url: recorder.url, serviceRoleKey: 'not-the-key' });
    await expect(wrong.getSession(randomUUID())).rejects.toThrow(/Invalid API key/);
    await wrong.close();
  });

  it('agrees with the Postgres adapter on the project-file and route methods', async () => {
    const project = await store.createProject({ name: 'Parity', templateType: 'react' });
    const limits = { maxFiles: 2, maxFileBytes: 10, maxProjectBytes: 15 };
    expect(await store.hasProjectFiles(project.id)).toBe(false);
    const put = (projectId: string, file: { path: string; content: string }) => store.applyProjectFiles(projectId, { write: [file], delete: [] }, limits);
    expect(await put(project.id, { path: 'z.txt', content: 'zz' })).toMatchObject({ outcome: 'applied', fileCount: 1, projectBytes: 2, written: [{ path: 'z.txt', created: true, fileBytes: 2 }] });
    expect(await put(project.id, { path: 'é.txt', content: 'ééé' })).toMatchObject({ outcome: 'applied', fileCount: 2, written: [{ fileBytes: 6 }] });
    expect(await put(project.id, { path: 'c.txt', content: 'c' })).toMatchObject({ outcome: 'too-many-files' });
    expect(await put(project.id, { path: 'z.txt', content: '01234567890' })).toMatchObject({ outcome: 'file-too-large' });
    expect(await put(randomUUID(), { path: 'a', content: 'a' })).toMatchObject({ outcome: 'no-project' });
    expect(await store.hasProjectFiles(project.id)).toBe(true);
    expect(await store.listProjectFilePaths(project.id)).toEqual(await postgres.listProjectFilePaths(project.id));
    expect(await store.listProjectFiles(project.id)).toEqual(await postgres.listProjectFiles(project.id));
    expect(await store.applyProjectFiles(project.id, { write: [], delete: ['z.txt'] }, limits)).toMatchObject({ outcome: 'applied', deleted: ['z.txt'] });
    expect(await store.applyProjectFiles(project.id, { write: [], delete: ['z.txt'] }, limits)).toEqual({ outcome: 'no-file', path: 'z.txt' });
    expect(await store.listProjectFilePaths(project.id)).toEqual(await postgres.listProjectFilePaths(project.id));

    const session = await newSession();
    const routeId = randomUUID();
    await postgres.transition(session.id, 'starting', { containerId: 'm', containerUrl: 'http://127.0.0.1:9', routeId });
    expect(await store.getSessionByRoute(routeId)).toEqual(await postgres.getSessionByRoute(routeId));
    expect((await store.getSessionByRoute(routeId))?.id).toBe(session.id);
    expect(await store.getSessionsByRouteIds([routeId, randomUUID(), 'x'])).toEqual(await postgres.getSessionsByRouteIds([routeId]));
    expect(await store.getSessionByRoute(randomUUID())).toBeNull();
  });
});

describe('SupabaseSessionStore: a request fails at its timeout', () => {
  // postgrest-js retries GETs that fail or answer 503/520 (1 s, 2 s, 4 s apart); our bound is per call.
  const TIMEOUT_MS = 300;
  const MARGIN_MS = 1500;
  let server: Server;
  let url: string;
  let received = 0;
  let answer: (res: ServerResponse) => void;

  beforeAll(async () => {
    server = createServer((req, res) => {
      received++;
      answer(res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  async function timedRead(): Promise<number> {
    received = 0;
    const store = new SupabaseSessionStore({ url, serviceRoleKey: SERVICE_KEY, timeoutMs: TIMEOUT_MS });
    const started = Date.now();
    await expect(store.getSession(randomUUID())).rejects.toThrow();
    const elapsed = Date.now() - started;
    await store.close();
    return elapsed;
  }

  it('a read from a server that never answers fails after one request', async () => {
    answer = () => undefined;
    const elapsed = await timedRead();
    expect(elapsed).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
    expect(elapsed).toBeLessThan(TIMEOUT_MS + MARGIN_MS);
    expect(received).toBe(1);
  });

  it('a read answered 503 fails after one request', async () => {
    answer = (res) => res.writeHead(503, { 'content-type': 'application/json' }).end('{"code":"PGRST002","message":"schema cache not loaded"}');
    const elapsed = await timedRead();
    expect(elapsed).toBeLessThan(TIMEOUT_MS + MARGIN_MS);
    expect(received).toBe(1);
  });
});

describe('SESSION_STORE=supabase', () => {
  const base = { NODE_ENV: 'test', SESSION_STORE: 'supabase' };

  it('needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY, naming the missing one', () => {
    expect(() => loadConfig({ ...base, SUPABASE_SERVICE_ROLE_KEY: 'k' })).toThrow(ConfigError);
    expect(() => loadConfig({ ...base, SUPABASE_SERVICE_ROLE_KEY: 'k' })).toThrow(/SUPABASE_URL is required when SESSION_STORE=supabase/);
    expect(() => loadConfig({ ...base, SUPABASE_URL: 'https://x.supabase.co' })).toThrow(/SUPABASE_SERVICE_ROLE_KEY is required/);
    expect(() => loadConfig({ ...base, SESSION_STORE: 'mysql' })).toThrow(/SESSION_STORE/);
  });

  it('the factory picks the adapter by configuration (postgres by default)', async () => {
    const supabase = createSessionStore(loadConfig({ ...base, SUPABASE_URL: 'https://x.supabase.co', SUPABASE_SERVICE_ROLE_KEY: 'k' }));
    expect(supabase).toBeInstanceOf(SupabaseSessionStore);
    const postgres = createSessionStore(loadConfig({ NODE_ENV: 'test', DATABASE_URL: testDatabaseUrl() }));
    expect(postgres).toBeInstanceOf(PostgresSessionStore);
    await Promise.all([supabase.close(), postgres.close()]);
  });
});

// Against a real Supabase project: registered only when one is configured (it must have
// supabase/migrations applied, e.g. with `supabase db push`). Without SUPABASE_URL there
// is nothing to run it against here, so it is not registered rather than skipped.
if (process.env.SUPABASE_URL && process.env.SUPABASE_SERVICE_ROLE_KEY) {
  sessionStoreContract(
    `SupabaseSessionStore (${process.env.SUPABASE_URL})`,
    async () => new SupabaseSessionStore({ url: process.env.SUPABASE_URL!, serviceRoleKey: process.env.SUPABASE_SERVICE_ROLE_KEY! }),
  );
}
