import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'pg';

/**
 * A local HTTP server at Supabase's REST path (`/rest/v1`) that records every
 * request it gets and answers it from the real (test) Postgres database, the
 * way PostgREST documents it. It is a recorder for the Supabase adapter's
 * request-format tests, not a database of its own: every answer comes from
 * running the request against the real tables and SQL functions.
 *
 * Only the parts of PostgREST the adapter uses are understood; anything else is
 * answered 400 (PGRST100), so a request in another shape fails the test:
 *
 * - `POST /rpc/<fn>` with a JSON object of named arguments
 *   (docs.postgrest.org, "Functions as RPC": "Each key/value of the object will become an
 *   argument"). Like PostgREST, the arguments go through `json_to_record` with the
 *   function's own argument types; a set-returning function answers a JSON array,
 *   one returning a single composite an object, a scalar one the JSON value.
 * - `GET /<table>?select=<cols>&<col>=<op>.<value>&order=<col>.<dir>&limit=&offset=`
 *   ("Tables and Views": horizontal filtering with eq, neq, gt, gte, lt, lte, in, is;
 *   vertical filtering with select; ordering; limits and pagination).
 * - `POST /<table>` with a JSON object or array; `Prefer: return=representation`
 *   answers 201 with the inserted rows ("Prefer Header": return).
 * - The schema is `Accept-Profile` (GET) / `Content-Profile` (POST), default `public`
 *   ("Schemas": "For GET or HEAD, select the schema with Accept-Profile ... For POST,
 *   PATCH, PUT and DELETE, select the schema with Content-Profile").
 * - Errors are `{ code, message, details, hint }` with the database's SQLSTATE and message.
 * - Like Supabase's gateway, a request without the expected `apikey` is answered 401.
 *
 * The PostgREST documentation these follow:
 *   https://docs.postgrest.org/en/latest/references/api/functions.html (Functions as RPC)
 *   https://docs.postgrest.org/en/latest/references/api/tables_views.html (horizontal and vertical filtering, ordering, limits)
 *   https://docs.postgrest.org/en/latest/references/api/schemas.html (Accept-Profile, Content-Profile)
 *   https://docs.postgrest.org/en/latest/references/api/preferences.html (Prefer: return=representation)
 */
export interface PostgrestRequest {
  method: string;
  /** The path below the server's root, e.g. `/rest/v1/rpc/vp_transition_session`. */
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  /** The parsed JSON body, or undefined when there was none. */
  body: unknown;
  status?: number;
}

export interface PostgrestRecorder {
  /** The Supabase URL to give the adapter (the REST API is `${url}/rest/v1`). */
  url: string;
  requests: PostgrestRequest[];
  close(): Promise<void>;
}

const REST = '/rest/v1';
const FILTER_OPS: Record<string, string> = { eq: '=', neq: '<>', gt: '>', gte: '>=', lt: '<', lte: '<=' };
const IDENT = /^[a-z_][a-z0-9_]*$/;

class RestError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly details: string | null = null, readonly hint: string | null = null) {
    super(message);
  }
}

export async function startPostgrestRecorder(databaseUrl: string, apiKey: string): Promise<PostgrestRecorder> {
  const pool = new Pool({ connectionString: databaseUrl, max: 10 });
  pool.on('error', () => undefined);
  const requests: PostgrestRequest[] = [];

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', async () => {
      const url = new URL(req.url ?? '/', 'http://recorder');
      const raw = Buffer.concat(chunks).toString('utf8');
      const recorded: PostgrestRequest = { method: req.method ?? 'GET', path: url.pathname, query: url.searchParams, headers: req.headers, body: undefined };
      requests.push(recorded);
      const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
        recorded.status = status;
        const text = body === undefined ? '' : JSON.stringify(body);
        res.writeHead(status, { ...(text ? { 'content-type': 'application/json; charset=utf-8' } : {}), ...headers });
        res.end(text);
      };
      try {
        recorded.body = raw ? JSON.parse(raw) : undefined;
        if (req.headers.apikey !== apiKey) throw new RestError(401, '401', 'Invalid API key');
        const result = await handle(pool, recorded);
        send(result.status, result.body);
      } catch (err) {
        if (err instanceof RestError) return send(err.status, { code: err.code, message: err.message, details: err.details, hint: err.hint });
        const pgError = err as { code?: string; message?: string; detail?: string; hint?: string };
        // PostgREST answers 409 for constraint violations, 400 for other errors raised in the database.
        const status = pgError.code?.startsWith('23') ? 409 : 400;
        send(status, { code: pgError.code ?? 'PGRST000', message: pgError.message ?? String(err), details: pgError.detail ?? null, hint: pgError.hint ?? null });
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await pool.end();
    },
  };
}

async function handle(pool: Pool, req: PostgrestRequest): Promise<{ status: number; body: unknown }> {
  if (!req.path.startsWith(`${REST}/`)) throw new RestError(404, 'PGRST125', `Invalid path ${req.path}`);
  const target = req.path.slice(REST.length + 1);
  const profile = String((req.method === 'GET' || req.method === 'HEAD' ? req.headers['accept-profile'] : req.headers['content-profile']) ?? 'public');
  if (profile !== 'public') throw new RestError(406, 'PGRST106', `The schema must be one of the following: public`);
  if (target.startsWith('rpc/') && req.method === 'POST') return callFunction(pool, profile, target.slice(4), req.body);
  if (!IDENT.test(target)) throw new RestError(404, 'PGRST205', `Could not find the table '${profile}.${target}' in the schema cache`);
  const columns = await tableColumns(pool, profile, target);
  if (req.method === 'GET') return { status: 200, body: await selectRows(pool, profile, target, columns, req.query) };
  if (req.method === 'POST') return insertRows(pool, profile, target, columns, req);
  throw new RestError(405, 'PGRST117', `Unsupported HTTP method ${req.method} in this recorder`);
}

/** Calls `schema.fn` with the body's named arguments, typed as the function declares them. */
async function callFunction(pool: Pool, schema: string, fn: string, body: unknown): Promise<{ status: number; body: unknown }> {
  const args = (body ?? {}) as Record<string, unknown>;
  if (typeof args !== 'object' || Array.isArray(args)) throw new RestError(400, 'PGRST100', 'The body of an RPC call must be a JSON object of named arguments');
  const { rows: found } = await pool.query<{ retset: boolean; typtype: string; rettype: string; names: string[] | null; types: string[]; modes: string[] | null }>(
    `select p.proretset as retset, t.typtype, format_type(p.prorettype, null) as rettype, p.proargnames as names,
            array(select format_type(x, null) from unnest(p.proargtypes) x) as types, p.proargmodes::text[] as modes
     from pg_proc p join pg_namespace n on n.oid = p.pronamespace join pg_type t on t.oid = p.prorettype
     where n.nspname = $1 and p.proname = $2`,
    [schema, fn],
  );
  const keys = Object.keys(args);
  // Input arguments: all of them when there are no modes, else those of mode i (in), b (inout), v (variadic).
  const candidates = found.filter((f) => {
    const names = (f.names ?? []).filter((_, i) => !f.modes || ['i', 'b', 'v'].includes(f.modes[i]));
    return keys.every((key) => names.includes(key));
  });
  if (candidates.length !== 1) {
    throw new RestError(404, 'PGRST202', `Could not find the function ${schema}.${fn}(${keys.join(', ')}) in the schema cache`);
  }
  const f = candidates[0];
  const inputNames = (f.names ?? []).filter((_, i) => !f.modes || ['i', 'b', 'v'].includes(f.modes[i]));
  const typeOf = new Map(inputNames.map((name, i) => [name, f.types[i]]));
  const q = (name: string) => `"${name.replace(/"/g, '""')}"`;
  const record = keys.length > 0 ? keys.map((key) => `${q(key)} ${typeOf.get(key)}`).join(', ') : null;
  const call = `${q(schema)}.${q(fn)}(${keys.map((key) => `${q(key)} := (select ${q(key)} from pgrst_args)`).join(', ')})`;
  const withArgs = record ? `with pgrst_args as (select * from json_to_record($1::json) as _(${record})) ` : '';
  const params = record ? [JSON.stringify(args)] : [];
  let sql: string;
  if (f.retset) sql = `${withArgs}select coalesce(json_agg(_r), '[]'::json) as v from ${call} _r`;
  else if (f.typtype === 'c') sql = `${withArgs}select to_json(_r) as v from ${call} _r`;
  else if (f.rettype === 'void') sql = `${withArgs}select ${call}, null::json as v`;
  else sql = `${withArgs}select to_json(${call}) as v`;
  const { rows } = await pool.query<{ v: unknown }>(sql, params);
  return { status: 200, body: rows[0]?.v ?? null };
}

async function tableColumns(pool: Pool, schema: string, table: string): Promise<Set<string>> {
  const { rows } = await pool.query<{ column_name: string }>(
    'select column_name from information_schema.columns where table_schema = $1 and table_name = $2',
    [schema, table],
  );
  if (rows.length === 0) throw new RestError(404, 'PGRST205', `Could not find the table '${schema}.${table}' in the schema cache`);
  return new Set(rows.map((row) => row.column_name));
}

function column(columns: Set<string>, name: string): string {
  if (!columns.has(name)) throw new RestError(400, '42703', `column "${name}" does not exist`);
  return `"${name}"`;
}

/** `(a,b,"c,d")` → ['a', 'b', 'c,d'] (PostgREST's list syntax for `in`). */
function parseList(value: string): string[] {
  const match = /^\((.*)\)$/s.exec(value);
  if (!match) throw new RestError(400, 'PGRST100', `"failed to parse filter (in.${value})"`);
  const items: string[] = [];
  const re = /\s*(?:"((?:[^"\\]|\\.)*)"|([^,]*))\s*(?:,|$)/gy;
  let m: RegExpExecArray | null;
  while (re.lastIndex < match[1].length && (m = re.exec(match[1])) !== null) items.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]);
  return items;
}

async function selectRows(pool: Pool, schema: string, table: string, columns: Set<string>, query: URLSearchParams): Promise<unknown[]> {
  const params: unknown[] = [];
  const where: string[] = [];
  let select = '*';
  let order = '';
  let limit = '';
  let offset = '';
  for (const [key, value] of query) {
    if (key === 'select') {
      select = value === '*' ? '*' : value.split(',').map((name) => column(columns, name.trim())).join(', ');
    } else if (key === 'order') {
      order = ` order by ${value
        .split(',')
        .map((term) => {
          const [name, ...mods] = term.split('.');
          const dir = mods.includes('desc') ? ' desc' : ' asc';
          const nulls = mods.includes('nullsfirst') ? ' nulls first' : mods.includes('nullslast') ? ' nulls last' : '';
          return `${column(columns, name)}${dir}${nulls}`;
        })
        .join(', ')}`;
    } else if (key === 'limit' || key === 'offset') {
      if (!/^\d+$/.test(value)) throw new RestError(400, 'PGRST100', `${key} must be a non-negative integer`);
      if (key === 'limit') limit = ` limit ${value}`;
      else offset = ` offset ${value}`;
    } else {
      const dot = value.indexOf('.');
      const op = value.slice(0, dot);
      const operand = value.slice(dot + 1);
      const col = column(columns, key);
      if (op in FILTER_OPS) {
        params.push(operand);
        where.push(`${col} ${FILTER_OPS[op]} $${params.length}`);
      } else if (op === 'in') {
        params.push(parseList(operand));
        where.push(`${col} = any ($${params.length})`);
      } else if (op === 'is' && ['null', 'true', 'false'].includes(operand)) {
        where.push(`${col} is ${operand}`);
      } else {
        throw new RestError(400, 'PGRST100', `"failed to parse filter (${value})" (this recorder knows eq, neq, gt, gte, lt, lte, in, is)`);
      }
    }
  }
  const sql =
    `select coalesce(json_agg(_r), '[]'::json) as v from (select ${select} from "${schema}"."${table}"` +
    `${where.length ? ` where ${where.join(' and ')}` : ''}${order}${limit}${offset}) _r`;
  const { rows } = await pool.query<{ v: unknown[] }>(sql, params);
  return rows[0].v;
}

async function insertRows(pool: Pool, schema: string, table: string, columns: Set<string>, req: PostgrestRequest): Promise<{ status: number; body: unknown }> {
  const body = req.body;
  const list = (Array.isArray(body) ? body : [body]) as Record<string, unknown>[];
  if (list.length === 0 || list.some((row) => typeof row !== 'object' || row === null)) throw new RestError(400, 'PGRST102', 'Invalid body');
  // Like PostgREST, only the keys sent are inserted; the other columns take their defaults.
  const names = [...new Set(list.flatMap((row) => Object.keys(row)))].map((name) => column(columns, name));
  const returning = /return=representation/.test(String(req.headers.prefer ?? ''));
  const sql =
    `with _ins as (insert into "${schema}"."${table}" (${names.join(', ')}) ` +
    `select ${names.join(', ')} from json_populate_recordset(null::"${schema}"."${table}", $1::json) returning *) ` +
    `select coalesce(json_agg(_ins), '[]'::json) as v from _ins`;
  const { rows } = await pool.query<{ v: unknown[] }>(sql, [JSON.stringify(list)]);
  return { status: 201, body: returning ? rows[0].v : undefined };
}
