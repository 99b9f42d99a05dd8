-- Velocity Preview: project file writes.
--
-- PUT and DELETE of single project files. The limits (files per project, bytes
-- per file, bytes per project) are enforced inside the write, under the project
-- row's lock, so concurrent writes to one project can never pass them together.
-- Sizes are UTF-8 bytes: octet_length(content) reads the stored length without
-- detoasting the value.

-- Upserts one file of p_project_id within the limits. Returns one row:
--   outcome: 'created' | 'updated'      the file was written
--            'no-project'               the project does not exist (nothing written)
--            'too-many-files'           a new path would make more than p_max_files files
--            'file-too-large'           the content is more than p_max_file_bytes bytes
--            'project-too-large'        the project would hold more than p_max_project_bytes bytes
--   file_bytes:    bytes of p_content
--   file_count:    files of the project after the write (or now, when refused)
--   project_bytes: bytes of the project after the write (or as it would be, when refused for size)
create or replace function public.vp_put_project_file(
  p_project_id uuid,
  p_path text,
  p_content text,
  p_max_files integer,
  p_max_file_bytes bigint,
  p_max_project_bytes bigint
)
returns table (outcome text, file_bytes bigint, file_count integer, project_bytes bigint)
language plpgsql
as $$
declare
  v_bytes bigint := octet_length(p_content);
  v_old_bytes bigint;
  v_count integer;
  v_total bigint;
begin
  perform 1 from public.projects where id = p_project_id for update;
  if not found then
    return query select 'no-project'::text, v_bytes, 0, 0::bigint;
    return;
  end if;

  select octet_length(f.content) into v_old_bytes
  from public.project_files f
  where f.project_id = p_project_id and f.file_path = p_path;

  select count(*)::integer, coalesce(sum(octet_length(f.content)), 0)::bigint into v_count, v_total
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

  insert into public.project_files (project_id, file_path, content)
  values (p_project_id, p_path, p_content)
  on conflict (project_id, file_path)
  do update set content = excluded.content, updated_at = now();

  update public.projects set updated_at = now() where id = p_project_id;

  return query select
    case when v_old_bytes is null then 'created' else 'updated' end::text,
    v_bytes,
    v_count + case when v_old_bytes is null then 1 else 0 end,
    v_total - coalesce(v_old_bytes, 0) + v_bytes;
end;
$$;

-- Removes one file of p_project_id; returns whether it existed. Touches the
-- project's updated_at in the same transaction.
create or replace function public.vp_delete_project_file(p_project_id uuid, p_path text)
returns boolean
language plpgsql
as $$
begin
  delete from public.project_files where project_id = p_project_id and file_path = p_path;
  if not found then
    return false;
  end if;
  update public.projects set updated_at = now() where id = p_project_id;
  return true;
end;
$$;
