-- Velocity Preview: tenants.
--
-- Row level security policies so a Supabase client holding a user's JWT sees only
-- that user's projects, files and sessions (the demo project is readable by every
-- signed-in user); the per-user quota of live sessions as one atomic SQL function;
-- indexes for both. The api itself connects as the table owner (Postgres adapter)
-- or the service role (Supabase adapter), which RLS does not restrict: it checks
-- ownership in code, and these policies are the guard for direct Supabase access.
--
-- Plain Postgres has no `auth` schema and no `anon` / `authenticated` /
-- `service_role` roles: they are created here only when missing, so the same file
-- applies unchanged to a real Supabase project, whose own auth.uid() is never
-- replaced. Idempotent, like the other migrations.

-- ---------------------------------------------------------------------------
-- Roles (cluster-wide; created only when missing). Several databases of one
-- server may be migrated at once (tests): a role created meanwhile by another
-- migration is not an error.
-- ---------------------------------------------------------------------------

do $$
declare
  v_role text;
begin
  foreach v_role in array array['anon', 'authenticated'] loop
    if not exists (select 1 from pg_roles where rolname = v_role) then
      begin
        execute format('create role %I nologin noinherit', v_role);
      exception when duplicate_object or unique_violation then
        null;
      end;
    end if;
  end loop;

  -- As on Supabase: the service role is not restricted by RLS. BYPASSRLS needs a
  -- superuser; without one the role is left out (nothing here depends on it).
  if not exists (select 1 from pg_roles where rolname = 'service_role') then
    begin
      create role service_role nologin noinherit bypassrls;
    exception
      when duplicate_object or unique_violation then null;
      when insufficient_privilege then raise notice 'service_role not created: %', sqlerrm;
    end;
  end if;
end;
$$;

-- ---------------------------------------------------------------------------
-- auth.uid(): Supabase's definition, only where Supabase's is missing. PostgREST
-- sets `request.jwt.claims` (older versions `request.jwt.claim.sub`) per request.
-- ---------------------------------------------------------------------------

do $$
begin
  if to_regnamespace('auth') is null then
    create schema auth;
  end if;
  if to_regprocedure('auth.uid()') is null then
    create function auth.uid() returns uuid
    language sql
    stable
    as $f$
      select coalesce(
        nullif(current_setting('request.jwt.claim.sub', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
      )::uuid
    $f$;
    grant usage on schema auth to anon, authenticated;
    if exists (select 1 from pg_roles where rolname = 'service_role') then
      grant usage on schema auth to service_role;
    end if;
  end if;
end;
$$;

-- What Supabase grants by default; no-ops there. Rows stay hidden without a policy.
grant usage on schema public to anon, authenticated;
grant select on public.projects, public.project_files, public.preview_sessions to authenticated;

do $$
begin
  if exists (select 1 from pg_roles where rolname = 'service_role') then
    grant usage on schema public to service_role;
    grant select, insert, update, delete on public.projects, public.project_files, public.preview_sessions to service_role;
  end if;
end;
$$;

-- ---------------------------------------------------------------------------
-- Row level security (enabled by the init migration). Read-only policies: every
-- write goes through the api, which enforces the file limits, the quotas and the
-- rate limit, and tells running previews; with no insert/update/delete policy,
-- RLS refuses those writes to `anon` and `authenticated`.
-- ---------------------------------------------------------------------------

-- A user's own projects, and the demo project (no owner) for every signed-in user.
drop policy if exists vp_projects_select_own on public.projects;
create policy vp_projects_select_own on public.projects
  for select
  to authenticated
  using (
    owner_id = (select auth.uid())
    or (owner_id is null and id = '550e8400-e29b-41d4-a716-446655440000'::uuid)
  );

-- Files of the projects the user may read.
drop policy if exists vp_project_files_select_own on public.project_files;
create policy vp_project_files_select_own on public.project_files
  for select
  to authenticated
  using (
    exists (
      select 1
      from public.projects p
      where p.id = project_files.project_id
        and (
          p.owner_id = (select auth.uid())
          or (p.owner_id is null and p.id = '550e8400-e29b-41d4-a716-446655440000'::uuid)
        )
    )
  );

-- A user's own sessions (of any project, the demo's included).
drop policy if exists vp_preview_sessions_select_own on public.preview_sessions;
create policy vp_preview_sessions_select_own on public.preview_sessions
  for select
  to authenticated
  using (owner_id = (select auth.uid()));

-- ---------------------------------------------------------------------------
-- Indexes: the policies and the quota count read by owner.
-- ---------------------------------------------------------------------------

create index if not exists projects_owner_id_idx
  on public.projects (owner_id);

create index if not exists preview_sessions_owner_id_status_idx
  on public.preview_sessions (owner_id, status);

-- ---------------------------------------------------------------------------
-- Quota: one owner's live sessions, counted and inserted under a per-owner lock.
-- ---------------------------------------------------------------------------

-- Inserts a `queued` session owned by p_owner_id when the owner has fewer than
-- p_max_live live sessions (queued, creating, starting, active); p_max_live null:
-- no limit. The transaction-scoped advisory lock (one key per owner) serialises
-- the count and the insert of concurrent requests of one owner, so they never pass
-- the limit together; other owners do not wait. Returns
--   {"outcome": "created",    "live": n, "limit": p_max_live, "session": the row}
--   {"outcome": "over-quota", "live": n, "limit": p_max_live, "next_expires_at": soonest expiry of an active one}
create or replace function public.vp_create_session_within_quota(
  p_id uuid,
  p_project_id uuid,
  p_owner_id uuid,
  p_tier text,
  p_resource_limits jsonb,
  p_max_live integer
)
returns jsonb
language plpgsql
as $$
declare
  v_row public.preview_sessions;
  v_live integer;
  v_next timestamptz;
begin
  if p_owner_id is null then
    raise exception 'vp_create_session_within_quota: p_owner_id is required' using errcode = '22023';
  end if;

  -- Only a limit needs the count and the insert serialised; without one, an owner's
  -- concurrent requests (the zero-setup user's, say) do not queue behind each other.
  if p_max_live is not null then
    perform pg_advisory_xact_lock(hashtext('vp_session_quota'), hashtext(p_owner_id::text));
  end if;

  select count(*)::integer, min(s.expires_at) filter (where s.status = 'active')
  into v_live, v_next
  from public.preview_sessions s
  where s.owner_id = p_owner_id
    and s.status in ('queued', 'creating', 'starting', 'active');

  if p_max_live is not null and v_live >= p_max_live then
    return jsonb_build_object('outcome', 'over-quota', 'live', v_live, 'limit', p_max_live, 'next_expires_at', v_next);
  end if;

  insert into public.preview_sessions (id, project_id, owner_id, status, tier, resource_limits)
  values (p_id, p_project_id, p_owner_id, 'queued', coalesce(p_tier, 'free'), coalesce(p_resource_limits, '{}'::jsonb))
  returning * into v_row;

  return jsonb_build_object('outcome', 'created', 'live', v_live + 1, 'limit', p_max_live, 'session', to_jsonb(v_row));
end;
$$;

-- ---------------------------------------------------------------------------
-- The vp_* functions are the services' own (Postgres adapter as table owner,
-- Supabase adapter by RPC with the service role): PostgREST must not offer them
-- to `anon` or `authenticated` clients.
-- ---------------------------------------------------------------------------

do $$
declare
  v_fn regprocedure;
  v_service boolean := exists (select 1 from pg_roles where rolname = 'service_role');
begin
  for v_fn in
    select p.oid::regprocedure
    from pg_proc p
    join pg_namespace n on n.oid = p.pronamespace
    where n.nspname = 'public' and p.proname like 'vp\_%'
  loop
    execute format('revoke execute on function %s from public, anon, authenticated', v_fn);
    if v_service then
      execute format('grant execute on function %s to service_role', v_fn);
    end if;
  end loop;
end;
$$;
