-- Velocity Preview: every change to a project's files is one call of
-- vp_apply_project_files: files written and removed together, all or nothing,
-- under the project's lock, the limits checked on the result, and each path's
-- precondition (If-Match: the SHA-256 of its current bytes, or * for "exists")
-- checked in the same transaction. The single-file functions it replaces are
-- dropped. Idempotent.

-- A file's ETag: the hex SHA-256 of its bytes (a text file's as UTF-8).
create or replace function public.vp_file_etag(p_content text, p_content_bytes bytea)
returns text
language sql
immutable
set search_path = ''
as $$
  select encode(sha256(coalesce(p_content_bytes, convert_to(p_content, 'UTF8'))), 'hex');
$$;

-- p_writes: [{path, content, encoding}], p_deletes: [path], p_expected: {path: etag | "*"}.
-- Answers {outcome: "applied", fileCount, projectBytes, written: [{path, created, fileBytes, etag}], deleted: [path]},
-- or the first reason nothing was changed: no-project; file-too-large {path, fileBytes};
-- precondition-failed {path, etag (null: no such file)}; no-file {path} (a delete);
-- too-many-files {fileCount}; project-too-large {projectBytes}.
create or replace function public.vp_apply_project_files(
  p_project_id uuid,
  p_writes jsonb,
  p_deletes jsonb,
  p_expected jsonb,
  p_max_files integer,
  p_max_file_bytes bigint,
  p_max_project_bytes bigint
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_writes jsonb;
  v_deletes text[] := array(select jsonb_array_elements_text(coalesce(p_deletes, '[]'::jsonb)));
  v_fail jsonb;
  v_count integer;
  v_total bigint;
  v_new_count integer;
  v_new_total bigint;
  v_written jsonb;
begin
  -- Decoded before the lock is taken: a bad value fails without holding the project.
  select coalesce(jsonb_agg(jsonb_build_object('path', w.path, 'text', w.text, 'data', encode(w.data, 'hex'), 'bytes', coalesce(octet_length(w.data), octet_length(w.text)))), '[]'::jsonb)
  into v_writes
  from (
    select r.path, d.data, case when d.data is null then r.content else '' end as text
    from jsonb_to_recordset(coalesce(p_writes, '[]'::jsonb)) as r(path text, content text, encoding text)
    cross join lateral (select public.vp_file_bytes(r.content, coalesce(r.encoding, 'utf8')) as data) d
  ) w;

  perform 1 from public.projects where id = p_project_id for update;
  if not found then
    return jsonb_build_object('outcome', 'no-project');
  end if;

  select jsonb_build_object('outcome', 'file-too-large', 'path', w->>'path', 'fileBytes', (w->>'bytes')::bigint)
  into v_fail
  from jsonb_array_elements(v_writes) w
  where (w->>'bytes')::bigint > p_max_file_bytes
  limit 1;
  if v_fail is not null then return v_fail; end if;

  select jsonb_build_object('outcome', 'precondition-failed', 'path', e.key, 'etag', public.vp_file_etag(f.content, f.content_bytes))
  into v_fail
  from jsonb_each_text(coalesce(p_expected, '{}'::jsonb)) e
  left join public.project_files f on f.project_id = p_project_id and f.file_path = e.key
  where f.id is null or (e.value <> '*' and e.value <> public.vp_file_etag(f.content, f.content_bytes))
  limit 1;
  if v_fail is not null then return v_fail; end if;

  select jsonb_build_object('outcome', 'no-file', 'path', d.path)
  into v_fail
  from unnest(v_deletes) d(path)
  where not exists (select 1 from public.project_files f where f.project_id = p_project_id and f.file_path = d.path)
  limit 1;
  if v_fail is not null then return v_fail; end if;

  -- The project as it would be: the files kept, and the ones written.
  select count(*)::integer, coalesce(sum(octet_length(f.content) + coalesce(octet_length(f.content_bytes), 0)), 0)::bigint
  into v_count, v_total
  from public.project_files f
  where f.project_id = p_project_id;
  select v_count - count(*)::integer, v_total - coalesce(sum(octet_length(f.content) + coalesce(octet_length(f.content_bytes), 0)), 0)::bigint
  into v_new_count, v_new_total
  from public.project_files f
  where f.project_id = p_project_id
    and (f.file_path = any (v_deletes) or f.file_path in (select w->>'path' from jsonb_array_elements(v_writes) w));
  select v_new_count + count(*)::integer, v_new_total + coalesce(sum((w->>'bytes')::bigint), 0)
  into v_new_count, v_new_total
  from jsonb_array_elements(v_writes) w;

  if v_new_count > p_max_files and v_new_count > v_count then
    return jsonb_build_object('outcome', 'too-many-files', 'fileCount', v_count);
  end if;
  if v_new_total > p_max_project_bytes then
    return jsonb_build_object('outcome', 'project-too-large', 'projectBytes', v_new_total);
  end if;

  delete from public.project_files f where f.project_id = p_project_id and f.file_path = any (v_deletes);

  with written as (
    insert into public.project_files as f (project_id, file_path, content, content_bytes)
    select p_project_id, w->>'path', w->>'text', decode(w->>'data', 'hex')
    from jsonb_array_elements(v_writes) w
    on conflict (project_id, file_path)
    do update set content = excluded.content, content_bytes = excluded.content_bytes, updated_at = now()
    returning f.file_path, (xmax = 0) as created, octet_length(f.content) + coalesce(octet_length(f.content_bytes), 0) as bytes,
      public.vp_file_etag(f.content, f.content_bytes) as etag
  )
  select coalesce(jsonb_agg(jsonb_build_object('path', file_path, 'created', created, 'fileBytes', bytes, 'etag', etag) order by file_path collate "C"), '[]'::jsonb)
  into v_written
  from written;

  update public.projects set updated_at = now() where id = p_project_id;

  return jsonb_build_object('outcome', 'applied', 'fileCount', v_new_count, 'projectBytes', v_new_total, 'written', v_written, 'deleted', to_jsonb(v_deletes));
end;
$$;

drop function if exists public.vp_put_project_file(uuid, text, text, integer, bigint, bigint, text);
drop function if exists public.vp_delete_project_file(uuid, text);

select public.vp_restrict_to_service_role(array[
  'public.vp_file_etag(text, bytea)'::regprocedure,
  'public.vp_apply_project_files(uuid, jsonb, jsonb, jsonb, integer, bigint, bigint)'::regprocedure
]);
