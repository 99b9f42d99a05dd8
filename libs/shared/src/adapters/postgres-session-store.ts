import { Pool } from 'pg';
import { allowedFrom, type SessionStatus } from '../session-state';
import type {
  NewSession,
  PreviewSession,
  Project,
  ProjectFile,
  ResourceLimits,
  SessionPatch,
  SessionStore,
} from '../session-store';
import type { Tier } from '../queues';

/**
 * SessionStore over direct SQL. Every method is one statement; multi-step writes
 * are the SQL functions of supabase/migrations, which the Supabase adapter calls
 * by RPC, so both adapters share their atomicity.
 */
export class PostgresSessionStore implements SessionStore {
  private readonly pool: Pool;
  private closed = false;

  constructor(databaseUrl: string, options: { max?: number } = {}) {
    // Bounded waits: a database that does not answer fails the call instead of hanging it.
    this.pool = new Pool({ connectionString: databaseUrl, max: options.max ?? 10, connectionTimeoutMillis: 5000, query_timeout: 15000 });
    // An idle connection dropped by the server must not crash the process; the next query reports it.
    this.pool.on('error', () => undefined);
  }

  async getProject(projectId: string): Promise<Project | null> {
    if (!isUuid(projectId)) return null;
    const { rows } = await this.pool.query<ProjectRow>('select * from projects where id = $1', [projectId]);
    return rows[0] ? toProject(rows[0]) : null;
  }

  async ensureProject(project: { id: string; name: string; templateType: string }): Promise<Project> {
    const { rows } = await this.pool.query<ProjectRow>('select * from vp_ensure_project($1, $2, $3)', [
      project.id,
      project.name,
      project.templateType,
    ]);
    return toProject(rows[0]);
  }

  async seedProjectFiles(projectId: string, files: ProjectFile[]): Promise<number> {
    const payload = JSON.stringify(files.map((file) => ({ path: file.path, content: file.content })));
    const { rows } = await this.pool.query<{ inserted: number }>(
      'select vp_seed_project_files($1, $2::jsonb) as inserted',
      [projectId, payload],
    );
    return rows[0].inserted;
  }

  async listProjectFiles(projectId: string): Promise<ProjectFile[]> {
    if (!isUuid(projectId)) return [];
    const { rows } = await this.pool.query<ProjectFile>(
      'select file_path as path, content from project_files where project_id = $1 order by file_path collate "C"',
      [projectId],
    );
    return rows;
  }

  async createSession(session: NewSession): Promise<PreviewSession> {
    const { rows } = await this.pool.query<SessionRow>('select * from vp_create_session($1, $2, $3, $4::jsonb, $5)', [
      session.id,
      session.projectId,
      session.tier,
      JSON.stringify(session.resourceLimits),
      session.status,
    ]);
    return toSession(rows[0]);
  }

  async getSession(sessionId: string): Promise<PreviewSession | null> {
    if (!isUuid(sessionId)) return null;
    const { rows } = await this.pool.query<SessionRow>('select * from preview_sessions where id = $1', [sessionId]);
    return rows[0] ? toSession(rows[0]) : null;
  }

  async transition(sessionId: string, to: SessionStatus, patch: SessionPatch = {}): Promise<PreviewSession | null> {
    if (!isUuid(sessionId)) return null;
    const { rows } = await this.pool.query<SessionRow>(
      'select * from vp_transition_session($1, $2::text[], $3, $4::jsonb)',
      [sessionId, allowedFrom(to), to, JSON.stringify(toPatchJson(patch))],
    );
    return rows[0] ? toSession(rows[0]) : null;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True for the canonical uuid text form; other ids can match no row. */
const isUuid = (value: unknown): value is string => typeof value === 'string' && UUID.test(value);

interface ProjectRow {
  id: string;
  owner_id: string | null;
  name: string;
  template_type: string;
  created_at: Date;
  updated_at: Date;
}

interface SessionRow {
  id: string;
  project_id: string;
  owner_id: string | null;
  status: SessionStatus;
  tier: Tier;
  resource_limits: ResourceLimits;
  container_id: string | null;
  container_url: string | null;
  preview_url: string | null;
  error_message: string | null;
  error_step: string | null;
  expires_at: Date | null;
  ended_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

const iso = (value: Date | string | null): string | null =>
  value === null ? null : value instanceof Date ? value.toISOString() : new Date(value).toISOString();

function toProject(row: ProjectRow): Project {
  return {
    id: row.id,
    name: row.name,
    templateType: row.template_type,
    ownerId: row.owner_id,
    createdAt: iso(row.created_at)!,
  };
}

function toSession(row: SessionRow): PreviewSession {
  return {
    id: row.id,
    projectId: row.project_id,
    status: row.status,
    tier: row.tier,
    resourceLimits: row.resource_limits,
    containerId: row.container_id,
    containerUrl: row.container_url,
    previewUrl: row.preview_url,
    errorMessage: row.error_message,
    errorStep: row.error_step,
    expiresAt: iso(row.expires_at),
    endedAt: iso(row.ended_at),
    createdAt: iso(row.created_at)!,
    updatedAt: iso(row.updated_at)!,
  };
}

/** The `p_patch` argument of vp_transition_session: snake_case keys, absent when undefined. */
function toPatchJson(patch: SessionPatch): Record<string, string | number | boolean> {
  const json: Record<string, string | number | boolean> = {};
  if (patch.containerId !== undefined) json.container_id = patch.containerId;
  if (patch.containerUrl !== undefined) json.container_url = patch.containerUrl;
  if (patch.previewUrl !== undefined) json.preview_url = patch.previewUrl;
  if (patch.errorMessage !== undefined) json.error_message = patch.errorMessage;
  if (patch.errorStep !== undefined) json.error_step = patch.errorStep;
  if (patch.ttlSeconds !== undefined) json.ttl_seconds = patch.ttlSeconds;
  if (patch.ended) json.ended = true;
  return json;
}
