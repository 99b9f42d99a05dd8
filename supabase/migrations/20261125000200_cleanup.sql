-- Velocity Preview: what the cleanup worker needs.
--
-- Idle stop (last activity reported by the machine, activation time), extending a
-- session up to its tier's maximum, and the indexes that keep every sweep query
-- proportional to what it finds, not to the size of the table. Idempotent, like
-- the init migration.

-- ---------------------------------------------------------------------------
-- Columns
-- ---------------------------------------------------------------------------

-- Last activity the machine reported (requests, open HMR connections); null until the first report.
alter table public.preview_sessions add column if not exists last_activity_at timestamptz;
-- When the session became active: the idle clock starts here, and the tier's
-- maximum duration counts from here. Set by the trigger below.
alter table public.preview_sessions add column if not exists activated_at timestamptz;

-- ---------------------------------------------------------------------------
-- activated_at: set once, by the database, on the move to active. A trigger, so
-- every writer (vp_transition_session, any adapter) sets it without a change.
-- ---------------------------------------------------------------------------

create or replace function public.vp_set_activated_at()
returns trigger
language plpgsql
as $$
begin
  if new.status = 'active' and old.status is distinct from 'active' and new.activated_at is null then
    new.activated_at := now();
  end if;
  return new;
end;
$$;

drop trigger if exists preview_sessions_set_activated_at on public.preview_sessions;
create trigger preview_sessions_set_activated_at
  before update of status on public.preview_sessions
  for each row
  execute function public.vp_set_activated_at();

-- ---------------------------------------------------------------------------
-- Indexes (the expiry sweep uses preview_sessions_active_expires_at_idx of init)
-- ---------------------------------------------------------------------------

-- Idle sweep: active sessions of a tier by the moment they were last seen in use.
create index if not exists preview_sessions_active_idle_idx
  on public.preview_sessions (tier, (coalesce(last_activity_at, activated_at, created_at)))
  where status = 'active';

-- Machine reconciliation: active sessions paged by id.
create index if not exists preview_sessions_active_id_idx
  on public.preview_sessions (id)
  where status = 'active';

-- Sessions left `ending` by a cleanup that died midway, by last change.
create index if not exists preview_sessions_ending_updated_at_idx
  on public.preview_sessions (updated_at)
  where status = 'ending';

-- Stuck sweep and lost-job recovery: sessions still provisioning, by creation
-- (the provisioning deadline counts from created_at).
create index if not exists preview_sessions_provisioning_created_at_idx
  on public.preview_sessions (created_at, id)
  where status in ('queued', 'creating', 'starting');

-- ---------------------------------------------------------------------------
-- Functions
-- ---------------------------------------------------------------------------

-- Moves an active session's expires_at later by p_seconds, never beyond
-- coalesce(activated_at, created_at) + p_max_duration_seconds. The row lock makes
-- concurrent extensions add up without passing the maximum. Returns
--   {"outcome": "extended" | "not-found" | "not-active" | "expired" | "beyond-max",
--    "max_until": timestamptz, "session": the row (after the change when extended)}
-- A session already past its expiry is being ended by cleanup: it is not revived.
create or replace function public.vp_extend_session(p_id uuid, p_seconds double precision, p_max_duration_seconds double precision)
returns jsonb
language plpgsql
as $$
declare
  v_row public.preview_sessions;
  v_max timestamptz;
  v_new timestamptz;
begin
  if p_seconds is null or p_seconds <= 0 then
    raise exception 'vp_extend_session: p_seconds must be positive, got %', p_seconds using errcode = '22023';
  end if;

  select * into v_row from public.preview_sessions where id = p_id for update;
  if not found then
    return jsonb_build_object('outcome', 'not-found');
  end if;

  v_max := coalesce(v_row.activated_at, v_row.created_at) + make_interval(secs => p_max_duration_seconds);
  if v_row.status <> 'active' or v_row.expires_at is null then
    return jsonb_build_object('outcome', 'not-active', 'max_until', v_max, 'session', to_jsonb(v_row));
  end if;
  if v_row.expires_at <= now() then
    return jsonb_build_object('outcome', 'expired', 'max_until', v_max, 'session', to_jsonb(v_row));
  end if;

  v_new := v_row.expires_at + make_interval(secs => p_seconds);
  if v_new > v_max then
    return jsonb_build_object('outcome', 'beyond-max', 'max_until', v_max, 'session', to_jsonb(v_row));
  end if;

  update public.preview_sessions
  set expires_at = v_new, updated_at = now()
  where id = p_id
  returning * into v_row;
  return jsonb_build_object('outcome', 'extended', 'max_until', v_max, 'session', to_jsonb(v_row));
end;
$$;
