-- Velocity Preview: initial schema.
--
-- Plain, idempotent SQL in the Supabase CLI layout: `supabase db push` applies it to
-- a Supabase project, and libs/shared/src/migrate.ts applies it to any Postgres,
-- both recording it in supabase_migrations.schema_migrations.
--
-- Writes that span several rows or checks are SQL functions, so they are atomic
-- whether the Postgres adapter calls them directly or the Supabase adapter calls
-- them by RPC (supabase-js has no client-side transactions).

-- ---------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------

create table if not exists public.projects (
  id uuid primary key default gen_random_uuid(),
  owner_id uuid null,
  name text not null,
  template_type text not null default 'react',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create table if not exists public.project_files (
  id uuid primary key default gen_random_uuid(),
  project_id uuid not null references public.projects (id) on delete cascade,
  file_path text not null,
  content text not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint project_files_project_id_file_path_key unique (project_id, file_path)
);

create table if not exists public.preview_sessions (
  id uuid primary key,
  project_id uuid not null references public.projects (id) on delete cascade,
  owner_id uuid null,
  status text not null
    constraint preview_sessions_status_check
    check (status in ('queued', 'creating', 'starting', 'active', 'ending', 'ended', 'error')),
  tier text not null default 'free',
  -- The ResourceLimits object of libs/shared/src/session-store.ts as is: {"cpus": .., "memoryMb": ..}.
  resource_limits jsonb not null default '{}'::jsonb,
  container_id text,
  container_url text,
  -- The id in the preview URL, /p/<route_id>/: the session's own id, or the id a
  -- warm-pool machine's Vite was started with (its base cannot change without a
  -- restart). The edge finds sessions by it.
  route_id uuid,
  preview_url text,
  error_message text,
  error_step text,
  expires_at timestamptz,
  ended_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

-- ---------------------------------------------------------------------------
-- Indexes
-- ---------------------------------------------------------------------------

create index if not exists preview_sessions_project_id_idx
  on public.preview_sessions (project_id);

-- Expiry sweep: active sessions by expiry.
create index if not exists preview_sessions_active_expires_at_idx
  on public.preview_sessions (expires_at)
  where status = 'active';

-- Stuck sweep: sessions still provisioning, by last change.
create index if not exists preview_sessions_provisioning_updated_at_idx
  on public.preview_sessions (updated_at)
  where status in ('queued', 'creating', 'starting');

-- Orphan reconciliation: which session owns a machine.
create index if not exists preview_sessions_container_id_idx
  on public.preview_sessions (container_id)
  where container_id is not null;

create unique index if not exists preview_sessions_route_id_idx
  on public.preview_sessions (route_id)
  where route_id is not null;

-- ---------------------------------------------------------------------------
-- Row level security: on Supabase, tables in `public` are exposed over the REST
-- API. With RLS on and no policies, only the service role (and table owners such
-- as the Postgres adapter's `postgres` user) can read or write them.
-- ---------------------------------------------------------------------------

alter table public.projects enable row level security;
alter table public.project_files enable row level security;
alter table public.preview_sessions enable row level security;

-- ---------------------------------------------------------------------------
-- Functions
-- ---------------------------------------------------------------------------

-- Creates the project when it does not exist; returns the row either way.
create or replace function public.vp_ensure_project(p_id uuid, p_name text, p_template_type text)
returns public.projects
language plpgsql
as $$
declare
  v_row public.projects;
begin
  insert into public.projects (id, name, template_type)
  values (p_id, p_name, coalesce(p_template_type, 'react'))
  on conflict (id) do nothing
  returning * into v_row;

  if not found then
    select * into v_row from public.projects where id = p_id;
  end if;
  return v_row;
end;
$$;

-- Inserts p_files ([{"path": .., "content": ..}]) only when the project has no
-- files; returns how many were inserted (0 when it had files). The project row
-- lock serialises concurrent seeds of one project.
create or replace function public.vp_seed_project_files(p_project_id uuid, p_files jsonb)
returns integer
language plpgsql
as $$
declare
  v_inserted integer;
begin
  if p_files is null or jsonb_typeof(p_files) <> 'array' then
    raise exception 'vp_seed_project_files: p_files must be a JSON array, got %', coalesce(jsonb_typeof(p_files), 'null')
      using errcode = 'invalid_parameter_value';
  end if;

  perform 1 from public.projects where id = p_project_id for update;
  if not found then
    raise exception 'vp_seed_project_files: project % does not exist', p_project_id
      using errcode = 'no_data_found';
  end if;

  if exists (select 1 from public.project_files where project_id = p_project_id) then
    return 0;
  end if;

  insert into public.project_files (project_id, file_path, content)
  select p_project_id, f.path, f.content
  from jsonb_to_recordset(p_files) as f(path text, content text)
  on conflict (project_id, file_path) do nothing;

  get diagnostics v_inserted = row_count;
  return v_inserted;
end;
$$;

-- Inserts the session row with status p_status ('queued' when the api records a
-- request, 'creating' when the provisioner finds no row) unless it exists;
-- returns the row either way (an existing row is returned unchanged).
create or replace function public.vp_create_session(p_id uuid, p_project_id uuid, p_tier text, p_resource_limits jsonb, p_status text default 'queued')
returns public.preview_sessions
language plpgsql
as $$
declare
  v_row public.preview_sessions;
begin
  if p_status not in ('queued', 'creating') then
    raise exception 'a new session starts queued or creating, not %', p_status using errcode = '22023';
  end if;
  insert into public.preview_sessions (id, project_id, status, tier, resource_limits)
  values (p_id, p_project_id, p_status, coalesce(p_tier, 'free'), coalesce(p_resource_limits, '{}'::jsonb))
  on conflict (id) do nothing
  returning * into v_row;

  if not found then
    select * into v_row from public.preview_sessions where id = p_id;
  end if;
  return v_row;
end;
$$;

-- Moves a session to p_to when its status is one of p_from, applying p_patch in
-- the same statement. Returns the updated row, or no row when the session is
-- missing or its status did not allow the move. Patch keys, all optional:
--   container_id, container_url, route_id, preview_url, error_message, error_step: set when present
--   ttl_seconds: expires_at = now() + that many seconds
--   ended: true sets ended_at = now()
create or replace function public.vp_transition_session(p_id uuid, p_from text[], p_to text, p_patch jsonb default '{}'::jsonb)
returns setof public.preview_sessions
language sql
as $$
  update public.preview_sessions s
  set
    status        = p_to,
    container_id  = case when p_patch ? 'container_id'  then p_patch ->> 'container_id'  else s.container_id  end,
    container_url = case when p_patch ? 'container_url' then p_patch ->> 'container_url' else s.container_url end,
    route_id      = case when p_patch ? 'route_id'      then (p_patch ->> 'route_id')::uuid else s.route_id  end,
    preview_url   = case when p_patch ? 'preview_url'   then p_patch ->> 'preview_url'   else s.preview_url   end,
    error_message = case when p_patch ? 'error_message' then p_patch ->> 'error_message' else s.error_message end,
    error_step    = case when p_patch ? 'error_step'    then p_patch ->> 'error_step'    else s.error_step    end,
    expires_at    = case
                      when (p_patch ->> 'ttl_seconds') is not null
                      then now() + make_interval(secs => (p_patch ->> 'ttl_seconds')::double precision)
                      else s.expires_at
                    end,
    ended_at      = case when (p_patch ->> 'ended')::boolean is true then now() else s.ended_at end,
    updated_at    = now()
  where s.id = p_id
    and s.status = any (p_from)
  returning s.*;
$$;
