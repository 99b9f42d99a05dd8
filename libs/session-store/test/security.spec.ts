import { randomUUID } from 'node:crypto';
import { Client, Pool, type PoolClient } from 'pg';
import { PostgresSessionStore } from '../src/postgres-session-store';
import { DEMO_PROJECT_ID } from '@velocity/contracts';
import { scratchDatabase } from '@velocity/testing';

/**
 * Security in the database (20261125000300_security.sql), against real Postgres:
 * row level security as a Supabase client with a user's JWT meets it, and the
 * per-owner quota of live sessions under concurrent inserts.
 */
describe('security migration', () => {
  let db: { url: string; drop: () => Promise<void> };
  let pool: Pool;
  let store: PostgresSessionStore;

  beforeAll(async () => {
    db = await scratchDatabase('security');
    pool = new Pool({ connectionString: db.url, max: 12 });
    store = new PostgresSessionStore(db.url, { max: 12 });
  }, 30_000);

  afterAll(async () => {
    await store?.close();
    await pool?.end();
    await db?.drop();
  });

  describe('row level security', () => {
    const alice = randomUUID();
    const bob = randomUUID();
    const ids = {
      aliceProject: randomUUID(),
      bobProject: randomUUID(),
      orphanProject: randomUUID(),
      aliceSession: randomUUID(),
      aliceDemoSession: randomUUID(),
      bobSession: randomUUID(),
      orphanSession: randomUUID(),
    };

    beforeAll(async () => {
      await pool.query(
        `insert into projects (id, owner_id, name) values
           ($1, $4, 'alice'), ($2, $5, 'bob'), ($3, null, 'no owner'), ($6, null, 'Demo project')`,
        [ids.aliceProject, ids.bobProject, ids.orphanProject, alice, bob, DEMO_PROJECT_ID],
      );
      await pool.query(
        `insert into project_files (project_id, file_path, content) values
           ($1, 'alice.js', 'a'), ($2, 'bob.js', 'b'), ($3, 'orphan.js', 'o'), ($4, 'demo.js', 'd')`,
        [ids.aliceProject, ids.bobProject, ids.orphanProject, DEMO_PROJECT_ID],
      );
      await pool.query(
        `insert into preview_sessions (id, project_id, owner_id, status) values
           ($1, $2, $3, 'active'), ($4, $5, $3, 'queued'), ($6, $7, $8, 'active'), ($9, $5, null, 'ended')`,
        [ids.aliceSession, ids.aliceProject, alice, ids.aliceDemoSession, DEMO_PROJECT_ID, ids.bobSession, ids.bobProject, bob, ids.orphanSession],
      );
    });

    /**
     * Runs `sql` as PostgREST does for a request with a user's JWT: in a transaction,
     * `set local role authenticated` and the claims in `request.jwt.claims`.
     */
    async function as<T = Record<string, unknown>>(role: string, claims: Record<string, unknown> | null, sql: string, params: unknown[] = []) {
      const client: PoolClient = await pool.connect();
      try {
        await client.query('begin');
        await client.query(`set local role ${client.escapeIdentifier(role)}`);
        if (claims) await client.query(`select set_config('request.jwt.claims', $1, true)`, [JSON.stringify(claims)]);
        const result = await client.query(sql, params);
        await client.query('commit');
        return result as unknown as { rows: T[]; rowCount: number };
      } catch (err) {
        await client.query('rollback');
        throw err;
      } finally {
        client.release();
      }
    }
    const user = (sub: string) => ({ sub, role: 'authenticated', aud: 'authenticated' });
    const visible = async (role: string, claims: Record<string, unknown> | null) => ({
      projects: (await as<{ id: string }>(role, claims, 'select id from projects order by id')).rows.map((r) => r.id).sort(),
      files: (await as<{ file_path: string }>(role, claims, 'select file_path from project_files')).rows.map((r) => r.file_path).sort(),
      sessions: (await as<{ id: string }>(role, claims, 'select id from preview_sessions')).rows.map((r) => r.id).sort(),
    });

    it('each user sees only their own projects, files and sessions, and the demo project', async () => {
      expect(await visible('authenticated', user(alice))).toEqual({
        projects: [ids.aliceProject, DEMO_PROJECT_ID].sort(),
        files: ['alice.js', 'demo.js'],
        sessions: [ids.aliceSession, ids.aliceDemoSession].sort(),
      });
      expect(await visible('authenticated', user(bob))).toEqual({
        projects: [ids.bobProject, DEMO_PROJECT_ID].sort(),
        files: ['bob.js', 'demo.js'],
        sessions: [ids.bobSession],
      });
    });

    it("a user asking for another's rows by id gets none", async () => {
      const rows = await as('authenticated', user(alice), 'select * from preview_sessions where id = $1', [ids.bobSession]);
      expect(rows.rows).toEqual([]);
      const files = await as('authenticated', user(alice), 'select * from project_files where project_id = $1', [ids.bobProject]);
      expect(files.rows).toEqual([]);
    });

    it('the claim as older PostgREST versions set it (request.jwt.claim.sub) works too', async () => {
      const client = await pool.connect();
      try {
        await client.query('begin');
        await client.query('set local role authenticated');
        await client.query(`select set_config('request.jwt.claim.sub', $1, true)`, [bob]);
        const { rows } = await client.query('select id from preview_sessions');
        expect(rows.map((r) => r.id)).toEqual([ids.bobSession]);
      } finally {
        await client.query('rollback');
        client.release();
      }
    });

    it('a signed-in request without a user id sees only the demo project; anon sees nothing', async () => {
      expect(await visible('authenticated', { role: 'authenticated' })).toEqual({ projects: [DEMO_PROJECT_ID], files: ['demo.js'], sessions: [] });
      // Plain Postgres: anon has no grant (permission denied); Supabase: a grant but no policy (no rows). Either way, nothing.
      const anon = await visible('anon', { role: 'anon' }).catch((err: { code?: string }) => err.code);
      expect(anon === '42501' || JSON.stringify(anon) === JSON.stringify({ projects: [], files: [], sessions: [] })).toBe(true);
    });

    it('users cannot write: inserts, updates and deletes are refused or touch nothing, and the vp_* functions are not theirs', async () => {
      const refusedOrNothing = async (sql: string, params: unknown[]) => {
        const outcome = await as('authenticated', user(alice), sql, params).then(
          (r) => r.rowCount,
          (err: { code?: string }) => err.code,
        );
        expect([0, '42501']).toContain(outcome);
      };
      // Past the quota and the rate limit, straight into the table: refused.
      await refusedOrNothing(`insert into preview_sessions (id, project_id, owner_id, status) values ($1, $2, $3, 'queued')`, [randomUUID(), ids.aliceProject, alice]);
      await refusedOrNothing(`update projects set name = 'mine now' where id = $1`, [ids.bobProject]);
      await refusedOrNothing(`update projects set name = 'renamed' where id = $1`, [ids.aliceProject]);
      await refusedOrNothing(`delete from project_files where project_id = $1`, [ids.bobProject]);
      await refusedOrNothing(`update preview_sessions set expires_at = now() + interval '1 year' where id = $1`, [ids.aliceSession]);
      await expect(
        as('authenticated', user(alice), `select vp_create_session_within_quota($1, $2, $3, 'pro', '{}'::jsonb, null)`, [randomUUID(), ids.aliceProject, alice]),
      ).rejects.toMatchObject({ code: '42501' });
      await expect(
        as('authenticated', user(alice), `select * from vp_transition_session($1, array['active'], 'ended', '{}'::jsonb)`, [ids.bobSession]),
      ).rejects.toMatchObject({ code: '42501' });
      // The functions later migrations add are the service role's only, too.
      for (const [sql, params] of [
        [`select vp_apply_project_files($1, '[{"path":"x.js","content":"x"}]'::jsonb, '[]'::jsonb, '{}'::jsonb, 10, 100, 1000)`, [ids.bobProject]],
        [`select vp_list_projects($1, null, 10, null, null)`, [bob]],
        [`select vp_list_sessions(null, false, 10, null, null)`, []],
        [`select vp_restrict_to_service_role(array[]::regprocedure[])`, []],
      ] as const) {
        await expect(as('authenticated', user(alice), sql, [...params])).rejects.toMatchObject({ code: '42501' });
        await expect(as('anon', null, sql, [...params])).rejects.toMatchObject({ code: '42501' });
      }
      expect((await as('service_role', null, `select vp_list_projects($1, null, 10, null, null) as p`, [bob])).rows).toHaveLength(1);
      const { rows } = await pool.query('select name from projects where id = any($1::uuid[]) order by name', [[ids.aliceProject, ids.bobProject]]);
      expect(rows.map((r) => r.name)).toEqual(['alice', 'bob']);
      expect((await pool.query('select count(*)::int as n from project_files where project_id = $1', [ids.bobProject])).rows[0].n).toBe(1);
    });

    it('the table owner (the Postgres adapter) and the service role (the Supabase adapter) see every row', async () => {
      const all = { projects: 4, files: 4, sessions: 4 };
      const count = async (run: (sql: string) => Promise<{ rows: { n: number }[] }>) => ({
        projects: (await run(`select count(*)::int as n from projects where id = any('{${Object.values(ids).join(',')},${DEMO_PROJECT_ID}}'::uuid[])`)).rows[0].n,
        files: (await run(`select count(*)::int as n from project_files where file_path in ('alice.js', 'bob.js', 'orphan.js', 'demo.js')`)).rows[0].n,
        sessions: (await run(`select count(*)::int as n from preview_sessions where id = any('{${Object.values(ids).join(',')}}'::uuid[])`)).rows[0].n,
      });
      expect(await count((sql) => pool.query(sql))).toEqual(all);
      expect(await count((sql) => as('service_role', null, sql))).toEqual(all);
    });

    it('auth.uid() reads the sub of the claims, as Supabase defines it', async () => {
      const { rows } = await as<{ uid: string }>('authenticated', user(alice), 'select auth.uid() as uid');
      expect(rows[0].uid).toBe(alice);
    });

    it('the migration is safe to run again (roles, auth.uid() and policies already there)', async () => {
      const { rows } = await pool.query<{ s: string[] }>(
        `select statements as s from supabase_migrations.schema_migrations where version = '20261125000300'`,
      );
      const client = new Client({ connectionString: db.url });
      await client.connect();
      try {
        await client.query(rows[0].s.join('\n'));
      } finally {
        await client.end();
      }
      expect((await visible('authenticated', user(bob))).sessions).toEqual([ids.bobSession]);
    });
  });

  describe('vp_create_session_within_quota', () => {
    let projectId: string;

    beforeAll(async () => {
      projectId = (await store.createProject({ name: 'quota', templateType: 'react' })).id;
    });

    const ask = (ownerId: string, maxLive: number | null, tier: 'free' | 'pro' = 'free') =>
      store.createSessionWithinQuota({ id: randomUUID(), projectId, ownerId, tier, resourceLimits: { cpus: 1, memoryMb: 512 } }, maxLive);

    it('of 12 concurrent requests of one owner at a limit of 3, exactly 3 insert', async () => {
      const owner = randomUUID();
      const results = await Promise.all(Array.from({ length: 12 }, () => ask(owner, 3)));
      const created = results.filter((r) => r.outcome === 'created');
      expect(created).toHaveLength(3);
      expect(results.filter((r) => r.outcome === 'over-quota')).toEqual(
        Array.from({ length: 9 }, () => ({ outcome: 'over-quota', live: 3, limit: 3, nextExpiresAt: null })),
      );
      const { rows } = await pool.query('select status, owner_id from preview_sessions where owner_id = $1', [owner]);
      expect(rows).toEqual(Array.from({ length: 3 }, () => ({ status: 'queued', owner_id: owner })));
      for (const r of created) if (r.outcome === 'created') expect(r.session).toMatchObject({ ownerId: owner, status: 'queued', projectId });
    });

    it('holds for many owners at once: each gets exactly its limit', async () => {
      const owners = Array.from({ length: 4 }, () => randomUUID());
      const results = await Promise.all(owners.flatMap((owner) => Array.from({ length: 5 }, () => ask(owner, 2).then((r) => ({ owner, r })))));
      for (const owner of owners) {
        expect(results.filter((x) => x.owner === owner && x.r.outcome === 'created')).toHaveLength(2);
      }
    });

    it('counts only live sessions (queued, creating, starting, active); an ended one frees a place', async () => {
      const owner = randomUUID();
      const first = await ask(owner, 1);
      expect(first.outcome).toBe('created');
      expect((await ask(owner, 1)).outcome).toBe('over-quota');
      const id = first.outcome === 'created' ? first.session.id : '';
      await store.transition(id, 'creating');
      await store.transition(id, 'starting');
      await store.transition(id, 'active', { ttlSeconds: 120 });
      const over = await ask(owner, 1);
      expect(over).toMatchObject({ outcome: 'over-quota', live: 1, limit: 1 });
      // Retry-After comes from the soonest expiry of an active session.
      expect(over.outcome === 'over-quota' && Date.parse(over.nextExpiresAt!) - Date.now()).toBeGreaterThan(100_000);
      await store.transition(id, 'ending');
      await store.transition(id, 'ended', { ended: true });
      expect((await ask(owner, 1)).outcome).toBe('created');
    });

    it('without a limit (null) inserts always, still owned', async () => {
      const owner = randomUUID();
      const results = await Promise.all(Array.from({ length: 5 }, () => ask(owner, null, 'pro')));
      expect(results.every((r) => r.outcome === 'created')).toBe(true);
      expect((await store.getSession((results[0] as { session: { id: string } }).session.id))?.ownerId).toBe(owner);
    });

    it('refuses a session without an owner', async () => {
      await expect(pool.query(`select vp_create_session_within_quota($1, $2, null, 'free', '{}'::jsonb, 1)`, [randomUUID(), projectId])).rejects.toMatchObject({
        code: '22023',
      });
    });
  });
});
