-- Velocity Preview: the quota insert takes its per-owner lock only when there is a limit.
--
-- As in 20261125000300_security.sql otherwise. `create or replace` keeps the
-- function's grants. Idempotent, like the other migrations.

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
