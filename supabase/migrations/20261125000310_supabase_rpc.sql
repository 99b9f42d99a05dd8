-- Velocity Preview: the statements the Supabase adapter needs as SQL functions.
--
-- supabase-js reaches the database only through PostgREST: simple reads become
-- GET /rest/v1/<table>?<filters>, everything else must be a function called by
-- POST /rest/v1/rpc/<name>. These functions are the statements of CLEANUP_SQL, of
-- listProjectFilePaths and of countLiveSessions in libs/shared/src/adapters/postgres-session-store.ts,
-- word for word, so both adapters behave alike (one contract suite runs against
-- both). Reads that need the database's clock (now()), an expression order or a
-- conditional update cannot be written as PostgREST filters; they are here.
-- Idempotent, like the other migrations.

-- Active sessions past expires_at (never ahead of the database's clock), earliest first.
create or replace function public.vp_list_expired_sessions(p_now timestamptz, p_limit integer)
returns setof public.preview_sessions
language sql
stable
as $$
  select * from public.preview_sessions
  where status = 'active' and expires_at <= least(p_now, now())
  order by expires_at limit p_limit;
$$;

-- Active sessions of a tier last seen in use (activity, else activation, else creation) before p_idle_since.
create or replace function public.vp_list_idle_sessions(p_tier text, p_idle_since timestamptz, p_limit integer)
returns setof public.preview_sessions
language sql
stable
as $$
  select * from public.preview_sessions
  where status = 'active' and tier = p_tier and coalesce(last_activity_at, activated_at, created_at) < p_idle_since
  order by coalesce(last_activity_at, activated_at, created_at) limit p_limit;
$$;

-- A session still provisioning and created before p_created_before becomes `error`,
-- its message naming the status it had, in one statement. No row when it moved on.
create or replace function public.vp_fail_stuck_session(p_id uuid, p_created_before timestamptz)
returns setof public.preview_sessions
language sql
as $$
  update public.preview_sessions
  set status = 'error', error_message = 'provisioning timed out at ' || status, ended_at = now(), updated_at = now()
  where id = p_id and status in ('queued', 'creating', 'starting') and created_at < p_created_before
  returning *;
$$;

-- Sessions still provisioning created at or after p_created_after, keyset-paged on
-- (created_at to the millisecond, id) after the cursor (both null for the first page).
create or replace function public.vp_list_provisioning_sessions(
  p_created_after timestamptz,
  p_limit integer,
  p_cursor_created_at timestamptz default null,
  p_cursor_id uuid default null
)
returns setof public.preview_sessions
language sql
stable
as $$
  select * from public.preview_sessions
  where status in ('queued', 'creating', 'starting')
    and created_at >= greatest(p_created_after, coalesce(p_cursor_created_at, p_created_after))
    and (p_cursor_created_at is null or (date_trunc('milliseconds', created_at), id) > (p_cursor_created_at, p_cursor_id))
  order by date_trunc('milliseconds', created_at), id limit p_limit;
$$;

-- Records activity of an active session: never backwards, never past now().
-- Returns the stored time, or null when the session is not active.
create or replace function public.vp_record_activity(p_id uuid, p_at timestamptz)
returns timestamptz
language sql
as $$
  update public.preview_sessions
  set last_activity_at = greatest(coalesce(last_activity_at, '-infinity'::timestamptz), least(p_at, now()))
  where id = p_id and status = 'active'
  returning last_activity_at;
$$;

-- Claims a session left `ending` since before p_updated_before: one caller moves
-- updated_at forward, the others find it fresh (no row).
create or replace function public.vp_claim_stale_ending(p_id uuid, p_updated_before timestamptz)
returns setof public.preview_sessions
language sql
as $$
  update public.preview_sessions set updated_at = now()
  where id = p_id and status = 'ending' and updated_at < p_updated_before
  returning *;
$$;

-- A project's files without their content (UTF-8 bytes), ordered by path byte-wise.
create or replace function public.vp_list_project_file_paths(p_project_id uuid)
returns table (path text, bytes integer, updated_at timestamptz)
language sql
stable
as $$
  select f.file_path, octet_length(f.content)::integer, f.updated_at
  from public.project_files f
  where f.project_id = p_project_id
  order by f.file_path collate "C";
$$;

-- Live sessions (not ended, not error) by status, in one grouped query: {"active": 3, ...}.
create or replace function public.vp_count_live_sessions()
returns jsonb
language sql
stable
as $$
  select coalesce(jsonb_object_agg(t.status, t.n), '{}'::jsonb)
  from (
    select status, count(*)::integer as n from public.preview_sessions
    where status in ('queued', 'creating', 'starting', 'active', 'ending') group by status
  ) t;
$$;

-- On Supabase (where the roles below exist), PostgREST exposes every function of
-- `public` to every API key. The vp_ functions are for the service role only:
-- anon and authenticated keys may not call them. Plain Postgres is left as is.
do $$
declare
  f regprocedure;
begin
  if not exists (select 1 from pg_roles where rolname = 'service_role') then
    return;
  end if;
  for f in
    select p.oid::regprocedure
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where n.nspname = 'public' and p.proname like 'vp\_%' and p.prokind = 'f' and p.prorettype <> 'trigger'::regtype
  loop
    execute format('revoke execute on function %s from public', f);
    if exists (select 1 from pg_roles where rolname = 'anon') then
      execute format('revoke execute on function %s from anon', f);
    end if;
    if exists (select 1 from pg_roles where rolname = 'authenticated') then
      execute format('revoke execute on function %s from authenticated', f);
    end if;
    execute format('grant execute on function %s to service_role', f);
  end loop;
end;
$$;
