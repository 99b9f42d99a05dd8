-- Velocity Preview: one owner's projects, counted and inserted under a per-owner
-- lock, as vp_create_session_within_quota does for live sessions. Both adapters
-- call this function. Idempotent.

-- Inserts a project owned by p_owner_id when the owner has fewer than
-- p_max_projects projects; p_max_projects null: no limit. The transaction-scoped
-- advisory lock (one key per owner, its own key space) serialises the count and
-- the insert of one owner's concurrent requests, so they never pass the limit
-- together; other owners do not wait. Returns
--   {"outcome": "created",    "count": n, "limit": p_max_projects, "project": the row}
--   {"outcome": "over-quota", "count": n, "limit": p_max_projects}
create or replace function public.vp_create_project_within_quota(
  p_name text,
  p_template_type text,
  p_owner_id uuid,
  p_max_projects integer
)
returns jsonb
language plpgsql
set search_path = public, pg_temp
as $$
declare
  v_row public.projects;
  v_count integer;
begin
  if p_owner_id is null then
    raise exception 'vp_create_project_within_quota: p_owner_id is required' using errcode = '22023';
  end if;

  if p_max_projects is not null then
    perform pg_advisory_xact_lock(hashtext('vp_project_quota'), hashtext(p_owner_id::text));
  end if;

  select count(*)::integer into v_count from public.projects p where p.owner_id = p_owner_id;

  if p_max_projects is not null and v_count >= p_max_projects then
    return jsonb_build_object('outcome', 'over-quota', 'count', v_count, 'limit', p_max_projects);
  end if;

  insert into public.projects (name, template_type, owner_id)
  values (p_name, p_template_type, p_owner_id)
  returning * into v_row;

  return jsonb_build_object('outcome', 'created', 'count', v_count + 1, 'limit', p_max_projects, 'project', to_jsonb(v_row));
end;
$$;

select public.vp_restrict_to_service_role(array[
  'public.vp_create_project_within_quota(text, text, uuid, integer)'::regprocedure
]);
