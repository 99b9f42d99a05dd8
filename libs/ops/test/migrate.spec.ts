import { randomBytes, randomUUID } from 'node:crypto';
import { copyFile, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { applyMigrations, databaseReachable, DEFAULT_MIGRATIONS_DIR, dropDatabase, ensureDatabase, withDatabase } from '../src/migrate';

const serverUrl = process.env.VP_TEST_PG_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
const scratchUrl = () => withDatabase(serverUrl, `vp_test_${process.pid}_${randomBytes(4).toString('hex')}_migrate`);

async function query<T extends Record<string, unknown>>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

const databaseExists = async (url: string) =>
  (await query(serverUrl, 'select 1 from pg_database where datname = $1', [new URL(url).pathname.slice(1)])).length === 1;

describe('migrations', () => {
  const url = scratchUrl();
  let initVersion: string;

  beforeAll(async () => {
    const files = (await readdir(DEFAULT_MIGRATIONS_DIR)).filter((f) => f.endsWith('.sql')).sort();
    expect(files[0]).toBe('20261125000000_init.sql');
    initVersion = '20261125000000';
  });

  afterAll(async () => {
    await dropDatabase(url);
  });

  it('creates the database once', async () => {
    expect(await databaseExists(url)).toBe(false);
    expect(await ensureDatabase(url)).toBe(true);
    expect(await databaseExists(url)).toBe(true);
    expect(await ensureDatabase(url)).toBe(false);
  });

  it('applies each migration once, even with concurrent runs', async () => {
    const runs = await Promise.all([applyMigrations(url), applyMigrations(url), applyMigrations(url)]);
    const applied = runs.flat();
    expect(applied).toContain(initVersion);
    expect(new Set(applied).size).toBe(applied.length);
    expect(await applyMigrations(url)).toEqual([]);

    const recorded = await query<{ version: string; name: string; statements: string[] }>(
      url,
      'select version, name, statements from supabase_migrations.schema_migrations order by version',
    );
    expect(recorded.map((r) => r.version)).toEqual(applied.sort());
    expect(recorded[0]).toMatchObject({ version: initVersion, name: 'init' });
    expect(recorded[0].statements.join('\n')).toContain('create table if not exists public.preview_sessions');
  });

  it('creates the tables with their columns', async () => {
    const columns = await query<{ table_name: string; column_name: string }>(
      url,
      `select table_name, column_name from information_schema.columns
       where table_schema = 'public' and table_name in ('projects', 'project_files', 'preview_sessions')`,
    );
    const of = (table: string) => columns.filter((c) => c.table_name === table).map((c) => c.column_name).sort();
    expect(of('projects')).toEqual(['created_at', 'id', 'name', 'owner_id', 'template_type', 'updated_at']);
    expect(of('project_files')).toEqual(['content', 'content_bytes', 'created_at', 'file_path', 'id', 'project_id', 'updated_at']);
    expect(of('preview_sessions')).toEqual(
      [
        'container_id', 'container_url', 'created_at', 'ended_at', 'error_message', 'error_step', 'expires_at', 'id',
        'owner_id', 'preview_url', 'project_id', 'resource_limits', 'status', 'tier', 'updated_at',
        // 20261125000200_cleanup
        'activated_at', 'last_activity_at',
        // the route id of the preview URL
        'route_id',
      ].sort(),
    );
  });

  it('enforces one file per (project_id, file_path) and valid statuses', async () => {
    const projectId = randomUUID();
    await query(url, `insert into projects (id, name) values ($1, 'p')`, [projectId]);
    await query(url, `insert into project_files (project_id, file_path, content) values ($1, 'a.txt', '1')`, [projectId]);
    await expect(
      query(url, `insert into project_files (project_id, file_path, content) values ($1, 'a.txt', '2')`, [projectId]),
    ).rejects.toMatchObject({ code: '23505', constraint: 'project_files_project_id_file_path_key' });
    await expect(
      query(url, `insert into preview_sessions (id, project_id, status) values ($1, $2, 'running')`, [randomUUID(), projectId]),
    ).rejects.toMatchObject({ code: '23514' });
  });

  it('creates the sweep indexes and the SQL functions', async () => {
    const indexes = await query<{ indexname: string }>(
      url,
      `select indexname from pg_indexes where schemaname = 'public' and tablename = 'preview_sessions'`,
    );
    expect(indexes.map((i) => i.indexname)).toEqual(
      expect.arrayContaining([
        'preview_sessions_project_id_idx',
        'preview_sessions_active_expires_at_idx',
        'preview_sessions_provisioning_updated_at_idx',
        'preview_sessions_container_id_idx',
      ]),
    );
    const functions = await query<{ proname: string; args: string }>(
      url,
      `select proname, pg_get_function_identity_arguments(p.oid) as args
       from pg_proc p join pg_namespace n on n.oid = p.pronamespace
       where n.nspname = 'public' and proname like 'vp\\_%' order by proname`,
    );
    expect(functions).toEqual(
      expect.arrayContaining([
        { proname: 'vp_create_session', args: 'p_id uuid, p_project_id uuid, p_tier text, p_resource_limits jsonb, p_status text' },
        { proname: 'vp_ensure_project', args: 'p_id uuid, p_name text, p_template_type text' },
        { proname: 'vp_seed_project_files', args: 'p_project_id uuid, p_files jsonb' },
        { proname: 'vp_transition_session', args: 'p_id uuid, p_from text[], p_to text, p_patch jsonb' },
      ]),
    );
    // Later migrations add theirs: every SQL function the adapters call by name exists.
    expect(functions.map((f) => f.proname)).toEqual(
      expect.arrayContaining(['vp_apply_project_files', 'vp_list_projects', 'vp_list_sessions', 'vp_extend_session', 'vp_set_activated_at']),
    );
  });

  it('every vp_* function runs with its own search_path, not its caller’s', async () => {
    const functions = await query<{ fn: string; search_path: string | null }>(
      url,
      `select p.oid::regprocedure::text as fn,
              (select c from unnest(p.proconfig) c where c like 'search_path=%') as search_path
       from pg_proc p join pg_namespace n on n.oid = p.pronamespace
       where n.nspname = 'public' and proname like 'vp\\_%' order by 1`,
    );
    expect(functions.length).toBeGreaterThan(10);
    expect(functions.filter((f) => f.search_path === null).map((f) => f.fn)).toEqual([]);
  });

  it('re-running the SQL itself is harmless (idempotent statements) and keeps data', async () => {
    const projectId = randomUUID();
    await query(url, `insert into projects (id, name) values ($1, 'kept')`, [projectId]);
    const [{ s: statements }] = await query<{ s: string[] }>(
      url,
      'select statements as s from supabase_migrations.schema_migrations where version = $1',
      [initVersion],
    );
    await query(url, statements.join('\n'));
    expect(await query(url, 'select name from projects where id = $1', [projectId])).toEqual([{ name: 'kept' }]);
  });

  describe('with extra migrations', () => {
    let dir: string;

    beforeAll(async () => {
      dir = await mkdtemp(path.join(tmpdir(), 'vp-migrations-'));
      await copyFile(path.join(DEFAULT_MIGRATIONS_DIR, '20261125000000_init.sql'), path.join(dir, '20261125000000_init.sql'));
    });

    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('applies only the new ones, in name order, and skips other files', async () => {
      // Versions after every shipped one, as a new migration's would be.
      await writeFile(path.join(dir, '20991127000000_second.sql'), 'alter table public.notes add column body text;');
      await writeFile(path.join(dir, '20991126000000_first.sql'), 'create table if not exists public.notes (id int primary key);');
      await writeFile(path.join(dir, 'README.md'), 'not a migration');
      await writeFile(path.join(dir, 'seed.sql'), 'select 1;');
      expect(await applyMigrations(url, dir)).toEqual(['20991126000000', '20991127000000']);
      expect(await applyMigrations(url, dir)).toEqual([]);
      const names = await query<{ name: string }>(url, 'select name from supabase_migrations.schema_migrations order by version');
      const shipped = (await readdir(DEFAULT_MIGRATIONS_DIR)).filter((f) => /^\d+_.+\.sql$/.test(f)).sort();
      const shippedNames = shipped.map((f) => f.replace(/^\d+_/, '').replace(/\.sql$/, ''));
      expect(names.map((n) => n.name)).toEqual([...shippedNames, 'first', 'second']);
    });

    it('rolls back and does not record a failing migration', async () => {
      await writeFile(
        path.join(dir, '20261128000000_broken.sql'),
        'create table public.half_done (id int);\nselect * from table_that_does_not_exist;',
      );
      await expect(applyMigrations(url, dir)).rejects.toThrow(/20261128000000_broken\.sql failed: .*table_that_does_not_exist/);
      const recorded = await query(url, `select 1 from supabase_migrations.schema_migrations where version = '20261128000000'`);
      expect(recorded).toHaveLength(0);
      const table = await query<{ t: string | null }>(url, `select to_regclass('public.half_done')::text as t`);
      expect(table[0].t).toBeNull();
    });
  });

  it('binary files: the migration leaves existing text files as they are (no row rewritten) and adds bytes beside them', async () => {
    const other = scratchUrl();
    const dir = await mkdtemp(path.join(tmpdir(), 'vp-migrations-'));
    const binary = '20261125000400_binary_project_files.sql';
    try {
      const shipped = (await readdir(DEFAULT_MIGRATIONS_DIR)).filter((f) => /^\d+_.+\.sql$/.test(f)).sort();
      for (const file of shipped.filter((f) => f < binary)) await copyFile(path.join(DEFAULT_MIGRATIONS_DIR, file), path.join(dir, file));
      await ensureDatabase(other);
      await applyMigrations(other, dir);
      const projectId = randomUUID();
      await query(other, `insert into projects (id, name) values ($1, 'old')`, [projectId]);
      await query(other, `insert into project_files (project_id, file_path, content) values ($1, 'a.js', 'héllo')`, [projectId]);
      const row = `select ctid::text, xmin::text, content from project_files where project_id = $1`;
      const before = await query(other, row, [projectId]);

      await copyFile(path.join(DEFAULT_MIGRATIONS_DIR, binary), path.join(dir, binary));
      expect(await applyMigrations(other, dir)).toEqual(['20261125000400']);
      // Same tuple, same transaction id: not rewritten.
      expect(await query(other, row, [projectId])).toEqual(before);
      expect(await query(other, `select * from vp_list_project_file_paths($1)`, [projectId])).toEqual([
        { path: 'a.js', bytes: 6, is_binary: false, updated_at: expect.any(Date) },
      ]);
      // One representation per row.
      await expect(
        query(other, `insert into project_files (project_id, file_path, content, content_bytes) values ($1, 'b.bin', 'text', '\\x00')`, [projectId]),
      ).rejects.toMatchObject({ code: '23514' });
    } finally {
      await dropDatabase(other);
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('drops a database even while it has connections', async () => {
    const other = scratchUrl();
    await ensureDatabase(other);
    const held = new Client({ connectionString: other });
    held.on('error', () => undefined);
    await held.connect();
    try {
      await dropDatabase(other);
      expect(await databaseExists(other)).toBe(false);
      await expect(dropDatabase(other)).resolves.toBeUndefined();
    } finally {
      await held.end().catch(() => undefined);
    }
  });

  it('refuses to drop the maintenance database', async () => {
    await expect(dropDatabase(serverUrl)).rejects.toThrow(/Refusing to drop the postgres database/);
  });
});

describe('databaseReachable', () => {
  it('resolves for a running server, even when the database does not exist yet', async () => {
    await expect(databaseReachable(serverUrl, 2000)).resolves.toBeUndefined();
    await expect(databaseReachable(withDatabase(serverUrl, 'vp_test_does_not_exist'), 2000)).resolves.toBeUndefined();
  });

  it('throws a clear error naming the server when nothing answers', async () => {
    const started = Date.now();
    await expect(databaseReachable('postgres://postgres:secret@127.0.0.1:1/x', 1000)).rejects.toThrow(
      /^PostgreSQL at postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:1\/x did not answer within 1000 ms: /,
    );
    expect(Date.now() - started).toBeLessThan(5000);
  });
});
