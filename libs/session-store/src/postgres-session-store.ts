import { createHash } from 'node:crypto';
import { Pool, type QueryResult, type QueryResultRow } from 'pg';
import { allowedFrom, isUuid, type SessionStatus, type ProjectFile, type Tier } from '@velocity/contracts';
import type { CreateProjectWithinQuotaResult, CreateSessionWithinQuotaResult, NewOwnedSession, ExtendSessionResult, SessionCursor, NewSession, PreviewSession, Project, ProjectFileInfo, ProjectFileLimits, ApplyFilesResult, FilesChange, SessionPatch, SessionStore, ListQuery, Page } from './session-store';
import { iso, toFileJson, toPatchJson, toProject, toProjectFile, toSession, pageOf, projectQuotaResult, type ProjectFileRow, type ProjectQuotaReply, type ProjectRow, type SessionRow } from './session-rows';

/**
 * SessionStore over direct SQL. Every method is one statement; multi-step writes
 * are the SQL functions of supabase/migrations, which the Supabase adapter calls
 * by RPC, so both adapters share their atomicity.
 */
export class PostgresSessionStore implements SessionStore {
  private readonly pool: Pool;
  private closed = false;

  /**
   * `max`: connections at most. `min`: connections opened at once and kept
   * open while idle, so a burst of sessions does not wait for (and Postgres
   * does not fork) new ones; pg closes the others after 10 s idle.
   * `timeoutMs`: the longest wait for a connection, and for a statement's answer.
   */
  constructor(databaseUrl: string, options: { max?: number; min?: number; timeoutMs?: number } = {}) {
    const max = options.max ?? 10;
    const min = Math.min(options.min ?? 0, max);
    const timeoutMs = options.timeoutMs ?? 15_000;
    // Bounded waits: a database that does not answer fails the call instead of hanging it. A statement that timed out
    // releases its connection with the error, and pg's pool closes such a connection rather than reuse it.
    this.pool = new Pool({ connectionString: databaseUrl, max, min, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs });
    // An idle connection dropped by the server must not crash the process; the next query reports it.
    this.pool.on('error', () => undefined);
    if (min > 0) void this.openConnections(min);
  }

  /**
   * One statement, prepared once per connection under a name derived from its
   * text: Postgres parses and plans it the first time only.
   */
  private query<R extends QueryResultRow>(text: string, values: unknown[] = []): Promise<QueryResult<R>> {
    return this.pool.query<R>({ name: statementName(text), text, values });
  }

  /** Opens `count` connections and gives them back to the pool idle; a failure is left to the first query to report. */
  private async openConnections(count: number): Promise<void> {
    const opened = await Promise.allSettled(Array.from({ length: count }, () => this.pool.connect()));
    for (const result of opened) if (result.status === 'fulfilled') result.value.release();
  }

  async getProject(projectId: string): Promise<Project | null> {
    if (!isUuid(projectId)) return null;
    const { rows } = await this.query<ProjectRow>('select * from projects where id = $1', [projectId]);
    return rows[0] ? toProject(rows[0]) : null;
  }

  async ensureProject(project: { id: string; name: string; templateType: string }): Promise<Project> {
    const { rows } = await this.query<ProjectRow>('select * from vp_ensure_project($1, $2, $3)', [
      project.id,
      project.name,
      project.templateType,
    ]);
    return toProject(rows[0]);
  }

  async seedProjectFiles(projectId: string, files: ProjectFile[]): Promise<number> {
    const payload = JSON.stringify(files.map(toFileJson));
    const { rows } = await this.query<{ inserted: number }>(
      'select vp_seed_project_files($1, $2::jsonb) as inserted',
      [projectId, payload],
    );
    return rows[0].inserted;
  }

  async listProjectFiles(projectId: string, paths?: readonly string[]): Promise<ProjectFile[]> {
    if (!isUuid(projectId)) return [];
    const { rows } = paths
      ? await this.query<ProjectFileRow>(
          'select file_path, content, content_bytes from project_files where project_id = $1 and file_path = any($2::text[]) order by file_path collate "C"',
          [projectId, paths],
        )
      : await this.query<ProjectFileRow>('select file_path, content, content_bytes from project_files where project_id = $1 order by file_path collate "C"', [projectId]);
    return rows.map(toProjectFile);
  }

  async createSession(session: NewSession): Promise<PreviewSession> {
    const { rows } = await this.query<SessionRow>('select * from vp_create_session($1, $2, $3, $4::jsonb, $5)', [
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
    const { rows } = await this.query<SessionRow>('select * from preview_sessions where id = $1', [sessionId]);
    return rows[0] ? toSession(rows[0]) : null;
  }

  async transition(sessionId: string, to: SessionStatus, patch: SessionPatch = {}): Promise<PreviewSession | null> {
    if (!isUuid(sessionId)) return null;
    const { rows } = await this.query<SessionRow>(
      'select * from vp_transition_session($1, $2::text[], $3, $4::jsonb)',
      [sessionId, allowedFrom(to), to, JSON.stringify(toPatchJson(patch))],
    );
    return rows[0] ? toSession(rows[0]) : null;
  }

  // --- cleanup; the statements are CLEANUP_SQL, at the end of this file ---

  async listExpiredSessions(now: Date, limit: number): Promise<PreviewSession[]> {
    const { rows } = await this.query<SessionRow>(CLEANUP_SQL.listExpired, [now, limit]);
    return rows.map(toSession);
  }

  async listIdleSessions(tier: Tier, idleSince: Date, limit: number): Promise<PreviewSession[]> {
    const { rows } = await this.query<SessionRow>(CLEANUP_SQL.listIdle, [tier, idleSince, limit]);
    return rows.map(toSession);
  }

  async listStuckSessions(createdBefore: Date, limit: number): Promise<PreviewSession[]> {
    const { rows } = await this.query<SessionRow>(CLEANUP_SQL.listStuck, [createdBefore, limit]);
    return rows.map(toSession);
  }

  async failStuckSession(sessionId: string, createdBefore: Date): Promise<PreviewSession | null> {
    if (!isUuid(sessionId)) return null;
    const { rows } = await this.query<SessionRow>(CLEANUP_SQL.failStuck, [sessionId, createdBefore]);
    return rows[0] ? toSession(rows[0]) : null;
  }

  async listProvisioningSessions(createdAfter: Date, limit: number, cursor?: SessionCursor): Promise<PreviewSession[]> {
    const { rows } = await this.query<SessionRow>(CLEANUP_SQL.listProvisioning, [
      createdAfter,
      limit,
      cursor ? cursor.createdAt : null,
      cursor && isUuid(cursor.id) ? cursor.id : null,
    ]);
    return rows.map(toSession);
  }

  async listActiveSessions(limit: number, afterId?: string): Promise<PreviewSession[]> {
    const { rows } = await this.query<SessionRow>(CLEANUP_SQL.listActive, [limit, afterId && isUuid(afterId) ? afterId : null]);
    return rows.map(toSession);
  }

  async getSessionsByIds(sessionIds: string[]): Promise<PreviewSession[]> {
    const ids = [...new Set(sessionIds.filter(isUuid))];
    if (ids.length === 0) return [];
    const { rows } = await this.query<SessionRow>('select * from preview_sessions where id = any ($1::uuid[])', [ids]);
    return rows.map(toSession);
  }

  async recordActivity(sessionId: string, at: Date): Promise<string | null> {
    if (!isUuid(sessionId)) return null;
    const { rows } = await this.query<{ last_activity_at: Date }>(CLEANUP_SQL.recordActivity, [sessionId, at]);
    return rows[0] ? iso(rows[0].last_activity_at) : null;
  }

  async extendSession(sessionId: string, seconds: number, maxDurationSeconds: number): Promise<ExtendSessionResult> {
    if (!isUuid(sessionId)) return { outcome: 'not-found' };
    const { rows } = await this.query<{ result: { outcome: ExtendSessionResult['outcome']; max_until?: string; session?: SessionRow } }>(
      'select vp_extend_session($1, $2, $3) as result',
      [sessionId, seconds, maxDurationSeconds],
    );
    const { outcome, max_until, session } = rows[0].result;
    if (outcome === 'not-found' || !session || !max_until) return { outcome: 'not-found' };
    return { outcome, session: toSession(session), maxUntil: iso(max_until)! };
  }

  async listStaleEndingSessions(updatedBefore: Date, limit: number): Promise<PreviewSession[]> {
    const { rows } = await this.query<SessionRow>(CLEANUP_SQL.listStaleEnding, [updatedBefore, limit]);
    return rows.map(toSession);
  }

  async claimStaleEnding(sessionId: string, updatedBefore: Date): Promise<PreviewSession | null> {
    if (!isUuid(sessionId)) return null;
    const { rows } = await this.query<SessionRow>(CLEANUP_SQL.claimStaleEnding, [sessionId, updatedBefore]);
    return rows[0] ? toSession(rows[0]) : null;
  }

  /** One grouped query over the live statuses; the partial indexes on them keep it off the ended history. */
  async countLiveSessions(): Promise<Partial<Record<SessionStatus, number>>> {
    const { rows } = await this.query<{ status: SessionStatus; n: number }>(
      `select status, count(*)::integer as n from preview_sessions
       where status in ('queued', 'creating', 'starting', 'active', 'ending') group by status`,
    );
    return Object.fromEntries(rows.map((row) => [row.status, row.n]));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }

  // --- project files ---

  async createProject(project: { name: string; templateType: string; ownerId?: string | null }): Promise<Project> {
    const { rows } = await this.query<ProjectRow>(
      'insert into projects (name, template_type, owner_id) values ($1, $2, $3) returning *',
      [project.name, project.templateType, project.ownerId ?? null],
    );
    return toProject(rows[0]);
  }

  async createProjectWithinQuota(project: { name: string; templateType: string; ownerId: string }, maxProjects: number | null): Promise<CreateProjectWithinQuotaResult> {
    const { rows } = await this.query<{ result: ProjectQuotaReply }>('select vp_create_project_within_quota($1, $2, $3, $4) as result', [
      project.name,
      project.templateType,
      project.ownerId,
      maxProjects,
    ]);
    return projectQuotaResult(rows[0].result);
  }

  async applyProjectFiles(projectId: string, change: FilesChange, limits: ProjectFileLimits): Promise<ApplyFilesResult> {
    if (!isUuid(projectId)) return { outcome: 'no-project' };
    const { rows } = await this.query<{ result: ApplyFilesResult }>('select vp_apply_project_files($1, $2, $3, $4, $5, $6, $7) as result', [
      projectId,
      JSON.stringify(change.write.map(toFileJson)),
      JSON.stringify(change.delete),
      JSON.stringify(change.expected ?? {}),
      limits.maxFiles,
      limits.maxFileBytes,
      limits.maxProjectBytes,
    ]);
    return rows[0].result;
  }

  async listProjectFilePaths(projectId: string): Promise<ProjectFileInfo[]> {
    if (!isUuid(projectId)) return [];
    // Sizes from both columns' stored lengths: no content is read.
    const { rows } = await this.query<{ path: string; bytes: number; is_binary: boolean; updated_at: Date }>(
      `select file_path as path, (octet_length(content) + coalesce(octet_length(content_bytes), 0))::integer as bytes,
         content_bytes is not null as is_binary, updated_at
       from project_files where project_id = $1 order by file_path collate "C"`,
      [projectId],
    );
    return rows.map((row) => ({ path: row.path, bytes: row.bytes, binary: row.is_binary, updatedAt: iso(row.updated_at)! }));
  }

  async getSessionByRoute(routeId: string): Promise<PreviewSession | null> {
    if (!isUuid(routeId)) return null;
    const { rows } = await this.query<SessionRow>('select * from preview_sessions where route_id = $1', [routeId]);
    return rows[0] ? toSession(rows[0]) : null;
  }

  async getSessionsByRouteIds(routeIds: string[]): Promise<PreviewSession[]> {
    const ids = [...new Set(routeIds.filter(isUuid))];
    if (ids.length === 0) return [];
    const { rows } = await this.query<SessionRow>('select * from preview_sessions where route_id = any ($1::uuid[])', [ids]);
    return rows.map(toSession);
  }

  async listProjects(query: ListQuery & { except?: string }): Promise<Page<Project>> {
    const { rows } = await this.query<{ row: ProjectRow & { cursor_at: string } }>('select vp_list_projects($1, $2, $3, $4, $5) as row', [
      query.ownerId,
      query.except ?? null,
      query.limit + 1,
      query.before?.at ?? null,
      query.before?.id ?? null,
    ]);
    return pageOf(rows.map((r) => r.row), query.limit, toProject);
  }

  async listSessions(query: ListQuery & { liveOnly: boolean }): Promise<Page<PreviewSession>> {
    const { rows } = await this.query<{ row: SessionRow & { cursor_at: string } }>('select vp_list_sessions($1, $2, $3, $4, $5) as row', [
      query.ownerId,
      query.liveOnly,
      query.limit + 1,
      query.before?.at ?? null,
      query.before?.id ?? null,
    ]);
    return pageOf(rows.map((r) => r.row), query.limit, toSession);
  }

  async hasProjectFiles(projectId: string): Promise<boolean> {
    if (!isUuid(projectId)) return false;
    const { rows } = await this.query<{ has: boolean }>('select exists (select 1 from project_files where project_id = $1) as has', [projectId]);
    return rows[0].has;
  }

  // --- security ---

  async createSessionWithinQuota(session: NewOwnedSession, maxLive: number | null): Promise<CreateSessionWithinQuotaResult> {
    const { rows } = await this.query<{
      result: { outcome: 'created' | 'over-quota'; live: number; limit: number | null; next_expires_at: string | null; session?: SessionRow };
    }>('select vp_create_session_within_quota($1, $2, $3, $4, $5::jsonb, $6) as result', [
      session.id,
      session.projectId,
      session.ownerId,
      session.tier,
      JSON.stringify(session.resourceLimits),
      maxLive,
    ]);
    const { outcome, live, limit, next_expires_at, session: row } = rows[0].result;
    if (outcome === 'created' && row) return { outcome, session: toSession(row), live };
    return { outcome: 'over-quota', live, limit: limit ?? 0, nextExpiresAt: iso(next_expires_at) };
  }
}


/**
 * The cleanup sweeps' statements. Each reads a partial index of
 * 20261125000000_init.sql / 20261125000200_cleanup.sql, so a sweep costs what it
 * finds, not the table (a test checks the plans with EXPLAIN).
 */
export const CLEANUP_SQL = {
  /** preview_sessions_active_expires_at_idx. least(): a session is never taken as expired before the database says so. */
  listExpired: `select * from preview_sessions
    where status = 'active' and expires_at <= least($1::timestamptz, now())
    order by expires_at limit $2`,
  /** preview_sessions_active_idle_idx. */
  listIdle: `select * from preview_sessions
    where status = 'active' and tier = $1 and coalesce(last_activity_at, activated_at, created_at) < $2::timestamptz
    order by coalesce(last_activity_at, activated_at, created_at) limit $3`,
  /** preview_sessions_provisioning_created_at_idx. */
  listStuck: `select * from preview_sessions
    where status in ('queued', 'creating', 'starting') and created_at < $1::timestamptz
    order by created_at, id limit $2`,
  /** One statement: the message names the status the row had when it was failed. */
  failStuck: `update preview_sessions
    set status = 'error', error_message = 'provisioning timed out at ' || status, ended_at = now(), updated_at = now()
    where id = $1 and status in ('queued', 'creating', 'starting') and created_at < $2::timestamptz
    returning *`,
  /**
   * preview_sessions_provisioning_created_at_idx, keyset-paged on (created_at to the
   * millisecond, id): the cursor comes from a row's ISO createdAt, which has milliseconds
   * while the column has microseconds.
   */
  listProvisioning: `select * from preview_sessions
    where status in ('queued', 'creating', 'starting')
      and created_at >= greatest($1::timestamptz, coalesce($3::timestamptz, $1::timestamptz))
      and ($3::timestamptz is null or (date_trunc('milliseconds', created_at), id) > ($3::timestamptz, $4::uuid))
    order by date_trunc('milliseconds', created_at), id limit $2`,
  /** Primary key, filtered to active rows, keyset-paged on id. */
  listActive: `select * from preview_sessions
    where status = 'active' and ($2::uuid is null or id > $2::uuid)
    order by id limit $1`,
  /** preview_sessions_ending_updated_at_idx. */
  listStaleEnding: `select * from preview_sessions
    where status = 'ending' and updated_at < $1::timestamptz
    order by updated_at limit $2`,
  /** The claim: one caller moves updated_at forward, the others find it fresh. */
  claimStaleEnding: `update preview_sessions set updated_at = now()
    where id = $1 and status = 'ending' and updated_at < $2::timestamptz
    returning *`,
  /** Only active rows; the stored time never moves backwards nor past now(). */
  recordActivity: `update preview_sessions
    set last_activity_at = greatest(coalesce(last_activity_at, '-infinity'::timestamptz), least($2::timestamptz, now()))
    where id = $1 and status = 'active'
    returning last_activity_at`,
} as const;

const statementNames = new Map<string, string>();

/** A prepared statement's name: the same text always gets the same name, and no two texts share one. */
function statementName(text: string): string {
  let name = statementNames.get(text);
  if (!name) {
    name = `vp_${createHash('sha1').update(text).digest('hex').slice(0, 24)}`;
    statementNames.set(text, name);
  }
  return name;
}
