-- Velocity Preview: route ids, for warm-pool machines (issue 9).
--
-- A preview URL is <public base>/p/<route_id>/. A session on a machine made for
-- it has route_id = its own id; a session that claimed a pre-started (pooled)
-- machine has the route id that machine's Vite was started with, since Vite's
-- `base` cannot change without a restart. The edge finds sessions by route id.
-- Idempotent, like the other migrations.

alter table public.preview_sessions add column if not exists route_id uuid;

create unique index if not exists preview_sessions_route_id_idx
  on public.preview_sessions (route_id) where route_id is not null;

-- As in the init migration, plus the patch key route_id.
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
