import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import WebSocket from 'ws';
import { allowedFrom, isUuid, type SessionStatus, type ProjectFile, type Tier } from '@velocity/contracts';
import type { CreateProjectWithinQuotaResult, CreateSessionWithinQuotaResult, ExtendSessionResult, NewOwnedSession, NewSession, PreviewSession, Project, ProjectFileInfo, ProjectFileLimits, ApplyFilesResult, FilesChange, SessionCursor, SessionPatch, SessionStore, ListQuery, Page } from './session-store';
import { iso, toFileJson, toPatchJson, toProject, toProjectFile, toSession, pageOf, projectQuotaResult, type ProjectFileRow, type ProjectQuotaReply, type ProjectRow, type SessionRow } from './session-rows';

export interface SupabaseSessionStoreOptions {
  /** The project's URL, `https://<ref>.supabase.co` (PostgREST answers under `/rest/v1`). */
  url: string;
  /** The service-role key: it bypasses row level security, so it stays on servers. */
  serviceRoleKey: string;
  /** Each request is aborted after this long (like the Postgres adapter's query timeout). */
  timeoutMs?: number;
}

/**
 * SessionStore over Supabase (supabase-js, PostgREST). Every write that spans rows
 * or checks is one of the SQL functions of supabase/migrations, called by RPC
 * (`POST /rest/v1/rpc/<name>` with the arguments as a JSON object): the same
 * functions the Postgres adapter calls directly, so the two share their
 * atomicity. Simple reads are PostgREST selects (`GET /rest/v1/<table>?select=*&id=eq.<uuid>`).
 * supabase-js has no client-side transactions; nothing here needs one.
 */
export class SupabaseSessionStore implements SessionStore {
  private readonly client: SupabaseClient;
  private closed = false;

  constructor(options: SupabaseSessionStoreOptions) {
    const timeoutMs = options.timeoutMs ?? 15_000;
    // Bounded waits: a PostgREST that does not answer fails the call instead of hanging it.
    const boundedFetch: typeof fetch = (input, init) => {
      const timeout = AbortSignal.timeout(timeoutMs);
      return fetch(input, { ...init, signal: init?.signal ? AbortSignal.any([init.signal, timeout]) : timeout });
    };
    this.client = createClient(options.url, options.serviceRoleKey, {
      auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
      db: { schema: 'public' },
      global: { fetch: boundedFetch },
      // Node 20 has no global WebSocket; realtime is never connected here, but the client is built eagerly.
      realtime: { transport: WebSocket as never },
    });
  }

  // --- projects and their files ---

  async getProject(projectId: string): Promise<Project | null> {
    if (!isUuid(projectId)) return null;
    const rows = await this.select<ProjectRow>('getProject', this.client.from('projects').select('*').eq('id', projectId));
    return rows[0] ? toProject(rows[0]) : null;
  }

  async ensureProject(project: { id: string; name: string; templateType: string }): Promise<Project> {
    const row = await this.rpc<ProjectRow | ProjectRow[]>('vp_ensure_project', {
      p_id: project.id,
      p_name: project.name,
      p_template_type: project.templateType,
    });
    return toProject(single(row)!);
  }

  async seedProjectFiles(projectId: string, files: ProjectFile[]): Promise<number> {
    return this.rpc<number>('vp_seed_project_files', {
      p_project_id: projectId,
      p_files: files.map(toFileJson),
    });
  }

  async listProjectFiles(projectId: string, paths?: readonly string[]): Promise<ProjectFile[]> {
    if (!isUuid(projectId)) return [];
    if (paths) {
      if (paths.length === 0) return [];
      const rows = await this.select<ProjectFileRow>(
        'listProjectFiles',
        this.client.from('project_files').select('file_path,content,content_bytes').eq('project_id', projectId).in('file_path', [...paths]),
      );
      return rows.map(toProjectFile).sort((a, b) => byCodePoint(a.path, b.path));
    }
    // Paged: PostgREST caps the rows of one answer (Supabase's "max rows", 1000 by default).
    const files: ProjectFile[] = [];
    for (let from = 0; ; from += FILE_PAGE) {
      // A binary file's bytes come as bytea's text form (`\x<hex>`).
      const rows = await this.select<ProjectFileRow>(
        'listProjectFiles',
        this.client
          .from('project_files')
          .select('file_path,content,content_bytes')
          .eq('project_id', projectId)
          .order('file_path')
          .range(from, from + FILE_PAGE - 1),
      );
      files.push(...rows.map(toProjectFile));
      if (rows.length < FILE_PAGE) break;
    }
    // The Postgres adapter orders by `file_path collate "C"` (byte order); PostgREST orders by the column's collation.
    return files.sort((a, b) => byCodePoint(a.path, b.path));
  }

  // --- sessions ---

  async createSession(session: NewSession): Promise<PreviewSession> {
    const row = await this.rpc<SessionRow | SessionRow[]>('vp_create_session', {
      p_id: session.id,
      p_project_id: session.projectId,
      p_tier: session.tier,
      p_resource_limits: session.resourceLimits,
      p_status: session.status,
    });
    return toSession(single(row)!);
  }

  async getSession(sessionId: string): Promise<PreviewSession | null> {
    if (!isUuid(sessionId)) return null;
    const rows = await this.select<SessionRow>('getSession', this.client.from('preview_sessions').select('*').eq('id', sessionId));
    return rows[0] ? toSession(rows[0]) : null;
  }

  async transition(sessionId: string, to: SessionStatus, patch: SessionPatch = {}): Promise<PreviewSession | null> {
    if (!isUuid(sessionId)) return null;
    const rows = await this.rpc<SessionRow[]>('vp_transition_session', {
      p_id: sessionId,
      p_from: allowedFrom(to),
      p_to: to,
      p_patch: toPatchJson(patch),
    });
    return rows[0] ? toSession(rows[0]) : null;
  }

  // --- cleanup: the statements of CLEANUP_SQL, as SQL functions (20261125000310_supabase_rpc.sql) or selects ---

  async listExpiredSessions(now: Date, limit: number): Promise<PreviewSession[]> {
    return (await this.rpc<SessionRow[]>('vp_list_expired_sessions', { p_now: now.toISOString(), p_limit: limit })).map(toSession);
  }

  async listIdleSessions(tier: Tier, idleSince: Date, limit: number): Promise<PreviewSession[]> {
    const rows = await this.rpc<SessionRow[]>('vp_list_idle_sessions', { p_tier: tier, p_idle_since: idleSince.toISOString(), p_limit: limit });
    return rows.map(toSession);
  }

  async listStuckSessions(createdBefore: Date, limit: number): Promise<PreviewSession[]> {
    const rows = await this.select<SessionRow>(
      'listStuckSessions',
      this.client
        .from('preview_sessions')
        .select('*')
        .in('status', PROVISIONING)
        .lt('created_at', createdBefore.toISOString())
        .order('created_at')
        .order('id')
        .limit(limit),
    );
    return rows.map(toSession);
  }

  async failStuckSession(sessionId: string, createdBefore: Date): Promise<PreviewSession | null> {
    if (!isUuid(sessionId)) return null;
    const rows = await this.rpc<SessionRow[]>('vp_fail_stuck_session', { p_id: sessionId, p_created_before: createdBefore.toISOString() });
    return rows[0] ? toSession(rows[0]) : null;
  }

  async listProvisioningSessions(createdAfter: Date, limit: number, cursor?: SessionCursor): Promise<PreviewSession[]> {
    const rows = await this.rpc<SessionRow[]>('vp_list_provisioning_sessions', {
      p_created_after: createdAfter.toISOString(),
      p_limit: limit,
      p_cursor_created_at: cursor ? cursor.createdAt : null,
      p_cursor_id: cursor && isUuid(cursor.id) ? cursor.id : null,
    });
    return rows.map(toSession);
  }

  async listActiveSessions(limit: number, afterId?: string): Promise<PreviewSession[]> {
    let query = this.client.from('preview_sessions').select('*').eq('status', 'active');
    if (afterId && isUuid(afterId)) query = query.gt('id', afterId);
    const rows = await this.select<SessionRow>('listActiveSessions', query.order('id').limit(limit));
    return rows.map(toSession);
  }

  async getSessionsByIds(sessionIds: string[]): Promise<PreviewSession[]> {
    const ids = [...new Set(sessionIds.filter(isUuid))];
    const sessions: PreviewSession[] = [];
    // Chunks keep each URL well under PostgREST's and proxies' length limits.
    for (let i = 0; i < ids.length; i += IDS_PER_REQUEST) {
      const chunk = ids.slice(i, i + IDS_PER_REQUEST);
      const rows = await this.select<SessionRow>('getSessionsByIds', this.client.from('preview_sessions').select('*').in('id', chunk));
      sessions.push(...rows.map(toSession));
    }
    return sessions;
  }

  async recordActivity(sessionId: string, at: Date): Promise<string | null> {
    if (!isUuid(sessionId)) return null;
    const stored = await this.rpc<string | null>('vp_record_activity', { p_id: sessionId, p_at: at.toISOString() });
    return stored === null ? null : iso(stored);
  }

  async extendSession(sessionId: string, seconds: number, maxDurationSeconds: number): Promise<ExtendSessionResult> {
    if (!isUuid(sessionId)) return { outcome: 'not-found' };
    const result = await this.rpc<{ outcome: ExtendSessionResult['outcome']; max_until?: string; session?: SessionRow }>('vp_extend_session', {
      p_id: sessionId,
      p_seconds: seconds,
      p_max_duration_seconds: maxDurationSeconds,
    });
    const { outcome, max_until, session } = result;
    if (outcome === 'not-found' || !session || !max_until) return { outcome: 'not-found' };
    return { outcome, session: toSession(session), maxUntil: iso(max_until)! };
  }

  async listStaleEndingSessions(updatedBefore: Date, limit: number): Promise<PreviewSession[]> {
    const rows = await this.select<SessionRow>(
      'listStaleEndingSessions',
      this.client.from('preview_sessions').select('*').eq('status', 'ending').lt('updated_at', updatedBefore.toISOString()).order('updated_at').limit(limit),
    );
    return rows.map(toSession);
  }

  async claimStaleEnding(sessionId: string, updatedBefore: Date): Promise<PreviewSession | null> {
    if (!isUuid(sessionId)) return null;
    const rows = await this.rpc<SessionRow[]>('vp_claim_stale_ending', { p_id: sessionId, p_updated_before: updatedBefore.toISOString() });
    return rows[0] ? toSession(rows[0]) : null;
  }

  /** For the api's `vp_sessions{status}` gauge: one RPC, one grouped query. */
  async countLiveSessions(): Promise<Partial<Record<SessionStatus, number>>> {
    return this.rpc<Partial<Record<SessionStatus, number>>>('vp_count_live_sessions', {});
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Nothing is pooled (each call is one HTTP request); realtime was never connected.
    await this.client.removeAllChannels();
  }

  // --- project files ---

  async createProject(project: { name: string; templateType: string; ownerId?: string | null }): Promise<Project> {
    const rows = await this.select<ProjectRow>(
      'createProject',
      this.client.from('projects').insert({ name: project.name, template_type: project.templateType, owner_id: project.ownerId ?? null }).select('*'),
    );
    return toProject(rows[0]);
  }

  async createProjectWithinQuota(project: { name: string; templateType: string; ownerId: string }, maxProjects: number | null): Promise<CreateProjectWithinQuotaResult> {
    const reply = await this.rpc<ProjectQuotaReply>('vp_create_project_within_quota', {
      p_name: project.name,
      p_template_type: project.templateType,
      p_owner_id: project.ownerId,
      p_max_projects: maxProjects,
    });
    return projectQuotaResult(reply);
  }

  async applyProjectFiles(projectId: string, change: FilesChange, limits: ProjectFileLimits): Promise<ApplyFilesResult> {
    if (!isUuid(projectId)) return { outcome: 'no-project' };
    return this.rpc<ApplyFilesResult>('vp_apply_project_files', {
      p_project_id: projectId,
      p_writes: change.write.map(toFileJson),
      p_deletes: change.delete,
      p_expected: change.expected ?? {},
      p_max_files: limits.maxFiles,
      p_max_file_bytes: limits.maxFileBytes,
      p_max_project_bytes: limits.maxProjectBytes,
    });
  }

  async listProjectFilePaths(projectId: string): Promise<ProjectFileInfo[]> {
    if (!isUuid(projectId)) return [];
    const rows = await this.rpc<{ path: string; bytes: number; is_binary: boolean; updated_at: string }[]>('vp_list_project_file_paths', {
      p_project_id: projectId,
    });
    return rows.map((row) => ({ path: row.path, bytes: Number(row.bytes), binary: row.is_binary, updatedAt: iso(row.updated_at)! }));
  }

  async listProjects(query: ListQuery & { except?: string }): Promise<Page<Project>> {
    const rows = await this.rpc<(ProjectRow & { cursor_at: string })[]>('vp_list_projects', {
      p_owner_id: query.ownerId,
      p_except_id: query.except ?? null,
      p_limit: query.limit + 1,
      p_before_at: query.before?.at ?? null,
      p_before_id: query.before?.id ?? null,
    });
    return pageOf(rows, query.limit, toProject);
  }

  async listSessions(query: ListQuery & { liveOnly: boolean }): Promise<Page<PreviewSession>> {
    const rows = await this.rpc<(SessionRow & { cursor_at: string })[]>('vp_list_sessions', {
      p_owner_id: query.ownerId,
      p_live_only: query.liveOnly,
      p_limit: query.limit + 1,
      p_before_at: query.before?.at ?? null,
      p_before_id: query.before?.id ?? null,
    });
    return pageOf(rows, query.limit, toSession);
  }

  async hasProjectFiles(projectId: string): Promise<boolean> {
    if (!isUuid(projectId)) return false;
    const rows = await this.select<{ id: string }>('hasProjectFiles', this.client.from('project_files').select('id').eq('project_id', projectId).limit(1));
    return rows.length > 0;
  }

  // --- warm pool ---

  async getSessionByRoute(routeId: string): Promise<PreviewSession | null> {
    if (!isUuid(routeId)) return null;
    const rows = await this.select<SessionRow>('getSessionByRoute', this.client.from('preview_sessions').select('*').eq('route_id', routeId));
    return rows[0] ? toSession(rows[0]) : null;
  }

  async getSessionsByRouteIds(routeIds: string[]): Promise<PreviewSession[]> {
    const ids = [...new Set(routeIds.filter(isUuid))];
    const sessions: PreviewSession[] = [];
    for (let i = 0; i < ids.length; i += IDS_PER_REQUEST) {
      const chunk = ids.slice(i, i + IDS_PER_REQUEST);
      const rows = await this.select<SessionRow>('getSessionsByRouteIds', this.client.from('preview_sessions').select('*').in('route_id', chunk));
      sessions.push(...rows.map(toSession));
    }
    return sessions;
  }

  // --- security ---

  async createSessionWithinQuota(session: NewOwnedSession, maxLive: number | null): Promise<CreateSessionWithinQuotaResult> {
    const result = await this.rpc<{ outcome: 'created' | 'over-quota'; live: number; limit: number | null; next_expires_at: string | null; session?: SessionRow }>(
      'vp_create_session_within_quota',
      {
        p_id: session.id,
        p_project_id: session.projectId,
        p_owner_id: session.ownerId,
        p_tier: session.tier,
        p_resource_limits: session.resourceLimits,
        p_max_live: maxLive,
      },
    );
    const { outcome, live, limit, next_expires_at, session: row } = result;
    if (outcome === 'created' && row) return { outcome, session: toSession(row), live };
    return { outcome: 'over-quota', live, limit: limit ?? 0, nextExpiresAt: iso(next_expires_at) };
  }

  // --- plumbing ---

  /** `POST /rest/v1/rpc/<fn>` with the named arguments as the JSON body; throws PostgREST's error. */
  private async rpc<T>(fn: string, args: Record<string, unknown>): Promise<T> {
    const { data, error } = await this.client.rpc(fn, args).retry(false);
    if (error) throw supabaseError(fn, error);
    return data as T;
  }

  /** Runs a select (or insert returning rows) once; throws PostgREST's error. */
  private async select<T>(what: string, query: RetryableQuery<{ data: unknown; error: PostgrestErrorLike | null }>): Promise<T[]> {
    const { data, error } = await query.retry(false);
    if (error) throw supabaseError(what, error);
    return (data ?? []) as T[];
  }
}

const FILE_PAGE = 1000;
const IDS_PER_REQUEST = 100;
const PROVISIONING = ['queued', 'creating', 'starting'];

/**
 * A postgrest-js query. It retries a failed or 503/520-answered GET up to 3 times,
 * 1, 2 and 4 s apart, and takes a timed-out fetch for a failure, so a call bounded
 * by timeoutMs could take 8 s; every request here is sent once. supabase-js has no
 * client-wide option for it (it does not pass postgrest-js's `retry` on).
 */
interface RetryableQuery<R> {
  retry(enabled: boolean): PromiseLike<R>;
}

interface PostgrestErrorLike {
  message: string;
  code?: string;
  details?: string | null;
  hint?: string | null;
}

/** An Error carrying PostgREST's message (which is the database's, for errors raised in SQL) and its code. */
function supabaseError(what: string, error: PostgrestErrorLike): Error {
  const detail = [error.details, error.hint].filter(Boolean).join('; ');
  const err = new Error(`${what}: ${error.message}${detail ? ` (${detail})` : ''}`) as Error & { code?: string };
  err.code = error.code;
  return err;
}

/** A function returning one composite answers an object; accept an array of one as well. */
const single = <T>(value: T | T[] | null): T | null => (Array.isArray(value) ? (value[0] ?? null) : value);


/** Byte order of UTF-8, which is code point order (collate "C"). */
function byCodePoint(a: string, b: string): number {
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0)! - y[i].codePointAt(0)!;
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

