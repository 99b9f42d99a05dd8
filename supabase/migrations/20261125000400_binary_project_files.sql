-- Velocity Preview: binary project files (images, fonts, wasm).
--
-- A file is text or bytes. Text stays in `content`, as before: no existing row
-- is rewritten (the new column is nullable, without a default). A binary file's
-- bytes are in `content_bytes`, its `content` empty. Sizes are real bytes for
-- both: octet_length() of either column reads the stored length without
-- detoasting the value. The functions take and give bytes as base64 text
-- (`encoding` 'base64'), the shape of a file on every other wire, so RPC callers
-- need no bytea syntax.
--
-- Functions set an empty search_path and name every table with its schema, so a
-- caller's search_path cannot swap in other tables or operators.

alter table public.project_files add column if not exists content_bytes bytea;

-- One representation per row. Checking it scans the table once; nothing is rewritten.
do $$
begin
  if not exists (
    select 1 from pg_constraint
    where conrelid = 'public.project_files'::regclass and conname = 'project_files_bytes_or_text_check'
  ) then
    alter table public.project_files
      add constraint project_files_bytes_or_text_check check (content_bytes is null or content = '');
  end if;
end;
$$;

-- The bytes of p_content in p_encoding ('utf8': null, the text goes to `content`;
-- 'base64': its bytes). Anything else is an error.
create or replace function public.vp_file_bytes(p_content text, p_encoding text)
returns bytea
language plpgsql
immutable
set search_path = ''
as $$
begin
  if p_encoding = 'utf8' then
    return null;
  elsif p_encoding = 'base64' then
    return decode(p_content, 'base64');
  end if;
  raise exception 'file encoding must be utf8 or base64, got %', coalesce(p_encoding, 'null')
    using errcode = 'invalid_parameter_value';
end;
$$;

-- Inserts p_files ([{"path": .., "content": .., "encoding"?: "base64"}]) only when
-- the project has no files; returns how many were inserted (0 when it had files).
-- The project row lock serialises concurrent seeds of one project.
create or replace function public.vp_seed_project_files(p_project_id uuid, p_files jsonb)
returns integer
language plpgsql
set search_path = ''
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

  insert into public.project_files (project_id, file_path, content, content_bytes)
  select p_project_id, f.path, case when f.bytes is null then f.content else '' end, f.bytes
  from (
    select r.path, r.content, public.vp_file_bytes(r.content, coalesce(r.encoding, 'utf8')) as bytes
    from jsonb_to_recordset(p_files) as r(path text, content text, encoding text)
  ) f
  on conflict (project_id, file_path) do nothing;

  get diagnostics v_inserted = row_count;
  return v_inserted;
end;
$$;

-- The signature changes (p_encoding): the old function would make calls ambiguous.
drop function if exists public.vp_put_project_file(uuid, text, text, integer, bigint, bigint);

-- Upserts one file of p_project_id within the limits. p_content is the text, or
-- with p_encoding 'base64' the bytes in base64 (last, with a default, so callers
-- that only write text need not name it). Returns one row:
--   outcome: 'created' | 'updated'      the file was written
--            'no-project'               the project does not exist (nothing written)
--            'too-many-files'           a new path would make more than p_max_files files
--            'file-too-large'           the file is more than p_max_file_bytes bytes
--            'project-too-large'        the project would hold more than p_max_project_bytes bytes
--   file_bytes:    real bytes of the file (UTF-8 text, or decoded bytes)
--   file_count:    files of the project after the write (or now, when refused)
--   project_bytes: bytes of the project after the write (or as it would be, when refused for size)
create or replace function public.vp_put_project_file(
  p_project_id uuid,
  p_path text,
  p_content text,
  p_max_files integer,
  p_max_file_bytes bigint,
  p_max_project_bytes bigint,
  p_encoding text default 'utf8'
)
returns table (outcome text, file_bytes bigint, file_count integer, project_bytes bigint)
language plpgsql
set search_path = ''
as $$
declare
  -- Decoded before the lock is taken: a bad value fails without holding the project.
  v_data bytea := public.vp_file_bytes(p_content, p_encoding);
  v_text text := case when v_data is null then p_content else '' end;
  v_bytes bigint := coalesce(octet_length(v_data), octet_length(v_text));
  v_old_bytes bigint;
  v_count integer;
  v_total bigint;
begin
  perform 1 from public.projects where id = p_project_id for update;
  if not found then
    return query select 'no-project'::text, v_bytes, 0, 0::bigint;
    return;
  end if;

  select octet_length(f.content) + coalesce(octet_length(f.content_bytes), 0) into v_old_bytes
  from public.project_files f
  where f.project_id = p_project_id and f.file_path = p_path;

  select count(*)::integer, coalesce(sum(octet_length(f.content) + coalesce(octet_length(f.content_bytes), 0)), 0)::bigint
  into v_count, v_total
  from public.project_files f
  where f.project_id = p_project_id;

  if v_bytes > p_max_file_bytes then
    return query select 'file-too-large'::text, v_bytes, v_count, v_total;
    return;
  end if;
  if v_old_bytes is null and v_count + 1 > p_max_files then
    return query select 'too-many-files'::text, v_bytes, v_count, v_total;
    return;
  end if;
  if v_total - coalesce(v_old_bytes, 0) + v_bytes > p_max_project_bytes then
    return query select 'project-too-large'::text, v_bytes, v_count, v_total - coalesce(v_old_bytes, 0) + v_bytes;
    return;
  end if;

  insert into public.project_files (project_id, file_path, content, content_bytes)
  values (p_project_id, p_path, v_text, v_data)
  on conflict (project_id, file_path)
  do update set content = excluded.content, content_bytes = excluded.content_bytes, updated_at = now();

  update public.projects set updated_at = now() where id = p_project_id;

  return query select
    case when v_old_bytes is null then 'created' else 'updated' end::text,
    v_bytes,
    v_count + case when v_old_bytes is null then 1 else 0 end,
    v_total - coalesce(v_old_bytes, 0) + v_bytes;
end;
$$;

-- The result gains `is_binary`: a new return type needs the function dropped first.
drop function if exists public.vp_list_project_file_paths(uuid);

-- A project's files without their content (real bytes, whether binary), ordered by path byte-wise.
create function public.vp_list_project_file_paths(p_project_id uuid)
returns table (path text, bytes integer, is_binary boolean, updated_at timestamptz)
language sql
stable
set search_path = ''
as $$
  select f.file_path, (octet_length(f.content) + coalesce(octet_length(f.content_bytes), 0))::integer, f.content_bytes is not null, f.updated_at
  from public.project_files f
  where f.project_id = p_project_id
  order by f.file_path collate "C";
$$;

-- Functions made here are the services' only, as in 20261125000300_security.sql:
-- not callable by `anon` or `authenticated` (PostgREST would offer them).
do $$
declare
  v_fn regprocedure;
begin
  foreach v_fn in array array[
    'public.vp_file_bytes(text, text)'::regprocedure,
    'public.vp_put_project_file(uuid, text, text, integer, bigint, bigint, text)'::regprocedure,
    'public.vp_list_project_file_paths(uuid)'::regprocedure
  ] loop
    execute format('revoke execute on function %s from public', v_fn);
    if exists (select 1 from pg_roles where rolname = 'anon') then
      execute format('revoke execute on function %s from anon', v_fn);
    end if;
    if exists (select 1 from pg_roles where rolname = 'authenticated') then
      execute format('revoke execute on function %s from authenticated', v_fn);
    end if;
    if exists (select 1 from pg_roles where rolname = 'service_role') then
      execute format('grant execute on function %s to service_role', v_fn);
    end if;
  end loop;
end;
$$;
