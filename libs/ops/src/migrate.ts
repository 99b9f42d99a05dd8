import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { Client, type ClientConfig } from 'pg';
import { repoRootOf } from '@velocity/runtime';

/**
 * Applies the plain SQL migrations of supabase/migrations (Supabase CLI layout)
 * to any Postgres, recording them where the Supabase CLI does:
 * `supabase_migrations.schema_migrations`. So a database migrated here and one
 * migrated with `supabase db push` agree on what was applied. The SQL is read
 * from the repo's supabase/migrations, whether this runs from its sources or
 * from the build (dist/), which carries no copy.
 */
export const DEFAULT_MIGRATIONS_DIR = path.join(repoRootOf(__dirname), 'supabase', 'migrations');

/** `<version>_<name>.sql`, as the Supabase CLI names migrations. */
const MIGRATION_FILE = /^(\d+)_(.+)\.sql$/;

/** Advisory lock key that serialises migration runs on one database ("vp-migr"). */
const MIGRATION_LOCK_KEY = 0x76702d6d69677200n.toString();

const MAINTENANCE_DB = 'postgres';
const PROTECTED_DBS = new Set(['postgres', 'template0', 'template1']);

/** The database name in a connection URL. */
export function databaseName(databaseUrl: string): string {
  const name = decodeURIComponent(new URL(databaseUrl).pathname.replace(/^\//, ''));
  if (!name) throw new Error(`Database URL ${redactUrl(databaseUrl)} names no database`);
  return name;
}

/** The same URL with another database name. */
export function withDatabase(databaseUrl: string, database: string): string {
  const url = new URL(databaseUrl);
  url.pathname = `/${encodeURIComponent(database)}`;
  return url.toString();
}

/** The URL without its password, for messages. */
function redactUrl(databaseUrl: string): string {
  try {
    const url = new URL(databaseUrl);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return '<invalid url>';
  }
}

async function withClient<T>(config: ClientConfig, run: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client(config);
  // A connection dropped by the server must not crash the process; the pending query rejects.
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

const maintenance = <T>(databaseUrl: string, run: (client: Client) => Promise<T>) =>
  withClient({ connectionString: withDatabase(databaseUrl, MAINTENANCE_DB) }, run);

/** Creates the URL's database on its server when it is missing. Returns true when it created it. */
export async function ensureDatabase(databaseUrl: string): Promise<boolean> {
  const name = databaseName(databaseUrl);
  return maintenance(databaseUrl, async (client) => {
    const existing = await client.query('select 1 from pg_database where datname = $1', [name]);
    if (existing.rowCount) return false;
    try {
      await client.query(`create database ${client.escapeIdentifier(name)}`);
      return true;
    } catch (error) {
      // Another process created it between our check and our create.
      const code = (error as { code?: string }).code;
      if (code === '42P04' || code === '23505') return false;
      throw error;
    }
  });
}

/** Drops the URL's database (for tests), ending its other connections first. */
export async function dropDatabase(databaseUrl: string): Promise<void> {
  const name = databaseName(databaseUrl);
  if (PROTECTED_DBS.has(name)) throw new Error(`Refusing to drop the ${name} database`);
  await maintenance(databaseUrl, async (client) => {
    await client.query(
      'select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()',
      [name],
    );
    await client.query(`drop database if exists ${client.escapeIdentifier(name)} with (force)`);
  });
}

/** Resolves when the server answers within `timeoutMs`; throws one clear Error otherwise. */
export async function databaseReachable(databaseUrl: string, timeoutMs = 2000): Promise<void> {
  const client = new Client({
    connectionString: databaseUrl,
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('select 1');
  } catch (error) {
    // A missing database is an answer: the server is up, the migrator creates the database.
    if ((error as { code?: string }).code === '3D000') return;
    const detail = error instanceof Error ? error.message || error.name : String(error);
    throw new Error(
      `PostgreSQL at ${redactUrl(databaseUrl)} did not answer within ${timeoutMs} ms: ${detail || 'no response'}`,
      { cause: error },
    );
  } finally {
    await client.end().catch(() => undefined);
  }
}

interface MigrationFile {
  version: string;
  name: string;
  file: string;
}

/** The migration files of `dir` in name order; other files are skipped, as the Supabase CLI does. */
async function listMigrations(dir = DEFAULT_MIGRATIONS_DIR): Promise<MigrationFile[]> {
  const entries = await readdir(dir);
  return entries
    .sort()
    .flatMap((file) => {
      const match = MIGRATION_FILE.exec(file);
      return match ? [{ version: match[1], name: match[2], file: path.join(dir, file) }] : [];
    });
}

/**
 * Applies every migration of `dir` not yet recorded, each in its own transaction,
 * in name order. Runs hold an advisory lock, so concurrent runs apply each
 * migration once. Returns the versions this run applied (none on a second run).
 */
export async function applyMigrations(databaseUrl: string, dir = DEFAULT_MIGRATIONS_DIR): Promise<string[]> {
  const migrations = await listMigrations(dir);
  return withClient({ connectionString: databaseUrl }, async (client) => {
    await client.query('select pg_advisory_lock($1::bigint)', [MIGRATION_LOCK_KEY]);
    try {
      await client.query('create schema if not exists supabase_migrations');
      await client.query(
        'create table if not exists supabase_migrations.schema_migrations (version text primary key, statements text[], name text)',
      );
      const recorded = await client.query<{ version: string }>('select version from supabase_migrations.schema_migrations');
      const done = new Set(recorded.rows.map((row) => row.version));

      const applied: string[] = [];
      for (const migration of migrations) {
        if (done.has(migration.version)) continue;
        const sql = await readFile(migration.file, 'utf8');
        await client.query('begin');
        try {
          await client.query(sql);
          await client.query(
            'insert into supabase_migrations.schema_migrations (version, statements, name) values ($1, $2, $3)',
            [migration.version, [sql], migration.name],
          );
          await client.query('commit');
        } catch (error) {
          await client.query('rollback').catch(() => undefined);
          const detail = error instanceof Error ? error.message : String(error);
          throw new Error(`Migration ${path.basename(migration.file)} failed: ${detail}`, { cause: error });
        }
        done.add(migration.version);
        applied.push(migration.version);
      }
      return applied;
    } finally {
      await client.query('select pg_advisory_unlock($1::bigint)', [MIGRATION_LOCK_KEY]).catch(() => undefined);
    }
  });
}

/** Creates the database when missing, then applies the pending migrations, idempotently; says what it did through `log`. */
export async function migrateDatabase(databaseUrl: string, log: (line: string) => void): Promise<string[]> {
  if (await ensureDatabase(databaseUrl)) log(`created database ${databaseName(databaseUrl)}`);
  const applied = await applyMigrations(databaseUrl);
  log(applied.length > 0 ? `applied migrations: ${applied.join(', ')}` : 'migrations: up to date');
  return applied;
}
