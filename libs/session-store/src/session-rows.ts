import type { SessionStatus, ProjectFile, ResourceLimits, Tier } from '@velocity/contracts';
import type { CreateProjectWithinQuotaResult, Page, PreviewSession, Project, SessionPatch } from './session-store';

/**
 * Rows of the three tables as both adapters receive them (node-postgres gives
 * timestamps as Date, PostgREST as strings), and their mapping to the port's
 * types: one mapping, so the adapters cannot drift apart.
 */
type Timestamp = Date | string;

export interface ProjectRow {
  id: string;
  owner_id: string | null;
  name: string;
  template_type: string;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface SessionRow {
  id: string;
  project_id: string;
  owner_id: string | null;
  status: SessionStatus;
  tier: Tier;
  resource_limits: ResourceLimits;
  container_id: string | null;
  container_url: string | null;
  route_id?: string | null;
  preview_url: string | null;
  error_message: string | null;
  error_step: string | null;
  expires_at: Timestamp | null;
  ended_at: Timestamp | null;
  created_at: Timestamp;
  updated_at: Timestamp;
}

/**
 * A project_files row as read: text in `content`; a binary file's bytes in
 * `content_bytes` (node-postgres gives a Buffer, PostgREST bytea's text form `\x<hex>`).
 */
export interface ProjectFileRow {
  file_path: string;
  content: string;
  content_bytes: Buffer | string | null;
}

/** ISO with milliseconds, whatever the driver gave. */
export const iso = (value: Timestamp | null): string | null =>
  value === null ? null : value instanceof Date ? value.toISOString() : new Date(value).toISOString();

/** What vp_create_project_within_quota answers (the row as JSON: its timestamps are strings). */
export interface ProjectQuotaReply {
  outcome: 'created' | 'over-quota';
  count: number;
  limit: number | null;
  project?: ProjectRow;
}

export function projectQuotaResult({ outcome, count, limit, project }: ProjectQuotaReply): CreateProjectWithinQuotaResult {
  if (outcome === 'created' && project) return { outcome, project: toProject(project), count };
  return { outcome: 'over-quota', count, limit: limit ?? 0 };
}

export function toProject(row: ProjectRow): Project {
  return {
    id: row.id,
    name: row.name,
    templateType: row.template_type,
    ownerId: row.owner_id,
    createdAt: iso(row.created_at)!,
    updatedAt: iso(row.updated_at)!,
  };
}

/** A page from the rows of a `vp_list_*` function, asked for one row more than the page holds (to tell whether another follows). */
export function pageOf<Row extends { id: string; cursor_at: string }, T>(rows: Row[], limit: number, to: (row: Row) => T): Page<T> {
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  return { items: items.map(to), next: rows.length > limit && last ? { at: last.cursor_at, id: last.id } : null };
}

export function toSession(row: SessionRow): PreviewSession {
  return {
    id: row.id,
    projectId: row.project_id,
    ownerId: row.owner_id ?? null,
    status: row.status,
    tier: row.tier,
    resourceLimits: row.resource_limits,
    containerId: row.container_id,
    containerUrl: row.container_url,
    routeId: row.route_id ?? null,
    previewUrl: row.preview_url,
    errorMessage: row.error_message,
    errorStep: row.error_step,
    expiresAt: iso(row.expires_at),
    endedAt: iso(row.ended_at),
    createdAt: iso(row.created_at)!,
    updatedAt: iso(row.updated_at)!,
  };
}

export function toProjectFile(row: ProjectFileRow): ProjectFile {
  if (row.content_bytes === null) return { path: row.file_path, content: row.content };
  return { path: row.file_path, content: byteaOf(row.content_bytes).toString('base64'), encoding: 'base64' };
}

function byteaOf(value: Buffer | string): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (!value.startsWith('\\x')) throw new Error('bytea value is not in hex format (\\x…)');
  return Buffer.from(value.slice(2), 'hex');
}

/** An entry of vp_seed_project_files' `p_files`: the file's wire shape (bytes as base64), nothing else. */
export const toFileJson = (file: ProjectFile): ProjectFile =>
  file.encoding ? { path: file.path, content: file.content, encoding: file.encoding } : { path: file.path, content: file.content };

/** The `p_patch` argument of vp_transition_session: snake_case keys, absent when undefined. */
export function toPatchJson(patch: SessionPatch): Record<string, string | number | boolean> {
  const json: Record<string, string | number | boolean> = {};
  if (patch.containerId !== undefined) json.container_id = patch.containerId;
  if (patch.containerUrl !== undefined) json.container_url = patch.containerUrl;
  if (patch.routeId !== undefined) json.route_id = patch.routeId;
  if (patch.previewUrl !== undefined) json.preview_url = patch.previewUrl;
  if (patch.errorMessage !== undefined) json.error_message = patch.errorMessage;
  if (patch.errorStep !== undefined) json.error_step = patch.errorStep;
  if (patch.ttlSeconds !== undefined) json.ttl_seconds = patch.ttlSeconds;
  if (patch.ended) json.ended = true;
  return json;
}
