-- Velocity Preview: a user's projects and sessions, listed newest first, a page
-- at a time (keyset: each page starts below the last row of the one before).
-- Each row carries its cursor, `cursor_at`, the sort time to the microsecond as
-- text: a client's Date keeps milliseconds only, and a cursor cut to them would
-- skip rows. Both adapters call these functions. Idempotent.

create index if not exists projects_owner_id_updated_at_idx
  on public.projects (owner_id, updated_at desc, id desc);

create index if not exists preview_sessions_owner_id_created_at_idx
  on public.preview_sessions (owner_id, created_at desc, id desc);

-- Projects by last change (a file write touches updated_at), newest first; p_owner_id null: every owner's.
create or replace function public.vp_list_projects(p_owner_id uuid, p_except_id uuid, p_limit integer, p_before_at timestamptz, p_before_id uuid)
returns setof jsonb
language sql
stable
set search_path = public, pg_temp
as $$
  select to_jsonb(p) || jsonb_build_object('cursor_at', to_char(p.updated_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
  from public.projects p
  where (p_owner_id is null or p.owner_id = p_owner_id)
    and p.id is distinct from p_except_id
    and (p_before_at is null or (p.updated_at, p.id) < (p_before_at, p_before_id))
  order by p.updated_at desc, p.id desc
  limit p_limit;
$$;

-- Sessions by creation, newest first; p_live_only: those not over (ended, error); p_owner_id null: every owner's.
create or replace function public.vp_list_sessions(p_owner_id uuid, p_live_only boolean, p_limit integer, p_before_at timestamptz, p_before_id uuid)
returns setof jsonb
language sql
stable
set search_path = public, pg_temp
as $$
  select to_jsonb(s) || jsonb_build_object('cursor_at', to_char(s.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
  from public.preview_sessions s
  where (p_owner_id is null or s.owner_id = p_owner_id)
    and (not p_live_only or s.status not in ('ended', 'error'))
    and (p_before_at is null or (s.created_at, s.id) < (p_before_at, p_before_id))
  order by s.created_at desc, s.id desc
  limit p_limit;
$$;

-- On Supabase only the service role may call a vp_* function (as 20261125000310 set for those before it);
-- later migrations call this for the functions they add.
create or replace function public.vp_restrict_to_service_role(p_functions regprocedure[])
returns void
language plpgsql
set search_path = public, pg_temp
as $$
declare
  f regprocedure;
begin
  if not exists (select 1 from pg_roles where rolname = 'service_role') then
    return;
  end if;
  foreach f in array p_functions
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

select public.vp_restrict_to_service_role(array[
  'public.vp_restrict_to_service_role(regprocedure[])'::regprocedure,
  'public.vp_list_projects(uuid, uuid, integer, timestamptz, uuid)'::regprocedure,
  'public.vp_list_sessions(uuid, boolean, integer, timestamptz, uuid)'::regprocedure
]);
