-- Velocity Preview: every vp_* function runs with a fixed search_path, so a
-- caller's search_path cannot put its own tables or operators in front of
-- ours (Supabase's advisor flags functions without one: "Function Search
-- Path Mutable"). The functions that still resolve names through the caller's
-- path name only tables of public and built-ins, so they get
-- `public, pg_temp`; those that already set one (`''`, with every name
-- qualified) keep it. Looping over pg_proc covers every vp_* function, with
-- its exact argument types. Idempotent.
do $$
declare
  f record;
begin
  for f in
    select n.nspname, p.proname, pg_get_function_identity_arguments(p.oid) as args
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where n.nspname = 'public'
      and p.proname like 'vp\_%'
      and p.prokind in ('f', 'p')
      and not exists (select 1 from unnest(p.proconfig) c where c like 'search_path=%')
  loop
    execute format('alter routine %I.%I(%s) set search_path = public, pg_temp', f.nspname, f.proname, f.args);
  end loop;
end;
$$;
