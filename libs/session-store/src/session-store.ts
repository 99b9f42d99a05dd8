import { DEFAULT_TEMPLATE, DEMO_PROJECT_ID, type ResourceLimits, type ProjectFile, type SessionStatus, type Tier } from '@velocity/contracts';

export interface Project {
  id: string;
  name: string;
  templateType: string;
  ownerId: string | null;
  createdAt: string;
  /** Its last change: created, or a file written or removed. */
  updatedAt: string;
}

export interface PreviewSession {
  id: string;
  projectId: string;
  /** The user (Supabase auth.users id) who asked for it; null for rows made without one. */
  ownerId: string | null;
  status: SessionStatus;
  tier: Tier;
  resourceLimits: ResourceLimits;
  containerId: string | null;
  containerUrl: string | null;
  /** The id in the preview URL (`/p/<routeId>/`): the session's own, or its pooled machine's. */
  routeId: string | null;
  previewUrl: string | null;
  errorMessage: string | null;
  errorStep: string | null;
  expiresAt: string | null;
  endedAt: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface NewSession {
  id: string;
  projectId: string;
  tier: Tier;
  resourceLimits: ResourceLimits;
  /** `queued` when the api records a request; `creating` when the provisioner finds no row. */
  status: 'queued' | 'creating';
}

/** Fields a status change may set along with the status. */
export interface SessionPatch {
  containerId?: string;
  containerUrl?: string;
  routeId?: string;
  previewUrl?: string;
  errorMessage?: string;
  errorStep?: string;
  /** Sets `expires_at` to the database's now() plus this many seconds. */
  ttlSeconds?: number;
  /** Sets `ended_at` to the database's now(). */
  ended?: boolean;
}

/**
 * The port for everything persistent, as four smaller ports: each consumer
 * depends on the ones it uses. Adapters: Postgres (direct SQL) and Supabase
 * (the same SQL functions over RPC). Writes that span several rows or checks
 * are single SQL functions, so each is atomic in both adapters.
 */
export interface SessionStore extends ProjectStore, SessionRecords, SessionQueries, SessionSweeps {
  close(): Promise<void>;
}

/** Projects and their files. Writes that span several files are one SQL function, so each is atomic in both adapters. */
export interface ProjectStore {
  getProject(projectId: string): Promise<Project | null>;
  /** Creates the project when it does not exist; returns it either way. */
  ensureProject(project: { id: string; name: string; templateType: string }): Promise<Project>;
  /** Creates a project with a new id and no files (the provisioner seeds a project that has none from its template). */
  createProject(project: { name: string; templateType: string; ownerId?: string | null }): Promise<Project>;
  /**
   * Creates a project owned by `project.ownerId` only while that owner has fewer than
   * `maxProjects` projects; count and insert happen under a per-owner lock, so concurrent
   * requests never pass the limit together. `maxProjects` null: no limit.
   */
  createProjectWithinQuota(project: { name: string; templateType: string; ownerId: string }, maxProjects: number | null): Promise<CreateProjectWithinQuotaResult>;
  /** Inserts the files only when the project has none; returns how many were inserted. */
  seedProjectFiles(projectId: string, files: ProjectFile[]): Promise<number>;
  /** The project's files, ordered by path; with `paths`, only those of them that exist. */
  listProjectFiles(projectId: string, paths?: readonly string[]): Promise<ProjectFile[]>;
  /** The project's files without their content, ordered by path; [] for an unknown project. */
  listProjectFilePaths(projectId: string): Promise<ProjectFileInfo[]>;
  /** Whether the project has any file: the provisioner seeds a template only into an empty project. */
  hasProjectFiles(projectId: string): Promise<boolean>;
  /**
   * Writes and removes files of a project together, all or nothing, in one
   * transaction under the project's lock: each path's precondition
   * (`expected`), the limits on the result, then the change (see FilesChange).
   */
  applyProjectFiles(projectId: string, change: FilesChange, limits: ProjectFileLimits): Promise<ApplyFilesResult>;
  /** Projects, most recently changed first; `ownerId` null: every owner's. */
  listProjects(query: ListQuery & { except?: string }): Promise<Page<Project>>;
}

/** A project by its id, null when there is none; the demo project is made on first use (no owner, the default template). */
export function projectById(store: Pick<ProjectStore, 'getProject' | 'ensureProject'>, projectId: string): Promise<Project | null> {
  if (projectId !== DEMO_PROJECT_ID) return store.getProject(projectId);
  return store.ensureProject({ id: DEMO_PROJECT_ID, name: 'Demo project', templateType: DEFAULT_TEMPLATE });
}

/** A session's row: created (within its owner's quota), read, and moved through its states. */
export interface SessionRecords {
  /** Inserts the session row (with `session.status`) unless it exists; returns the row either way. */
  createSession(session: NewSession): Promise<PreviewSession>;
  /**
   * Inserts a `queued` session owned by `session.ownerId` only while that owner has fewer
   * than `maxLive` live (queued, creating, starting, active) sessions; count and insert
   * happen under a per-owner lock, so concurrent requests never pass the limit together.
   * `maxLive` null: no limit.
   */
  createSessionWithinQuota(session: NewOwnedSession, maxLive: number | null): Promise<CreateSessionWithinQuotaResult>;
  getSession(sessionId: string): Promise<PreviewSession | null>;
  /** The rows of these ids that exist (any order); invalid ids match nothing. */
  getSessionsByIds(sessionIds: string[]): Promise<PreviewSession[]>;
  /**
   * Moves a session to `to` when its status allows it (see session-state) and
   * applies the patch in the same statement. Returns the updated row, or null
   * when the row is missing or its status did not allow the move.
   */
  transition(sessionId: string, to: SessionStatus, patch?: SessionPatch): Promise<PreviewSession | null>;
  /**
   * Records that an active session was in use at `at` (never later than the database's now(), never
   * moving backwards). Returns the stored last activity (ISO), or null when the session is not active.
   */
  recordActivity(sessionId: string, at: Date): Promise<string | null>;
  /**
   * Moves an active session's `expires_at` `seconds` later, atomically refusing to pass
   * activation (else creation) + `maxDurationSeconds`.
   */
  extendSession(sessionId: string, seconds: number, maxDurationSeconds: number): Promise<ExtendSessionResult>;
}

/** Sessions found by their preview route, and listed for clients and metrics. */
export interface SessionQueries {
  /** The session whose preview URL is `/p/<routeId>/`, or null. */
  getSessionByRoute(routeId: string): Promise<PreviewSession | null>;
  /** Sessions by route id (unknown and invalid ids are skipped). */
  getSessionsByRouteIds(routeIds: string[]): Promise<PreviewSession[]>;
  /** Sessions, newest first; `liveOnly`: not ended, not error. */
  listSessions(query: ListQuery & { liveOnly: boolean }): Promise<Page<PreviewSession>>;
  /**
   * Live sessions (not ended, not error) by status, in one grouped query: the api's
   * `vp_sessions{status}` gauge reads it on each scrape. Optional: an adapter without
   * it leaves that gauge empty.
   */
  countLiveSessions?(): Promise<Partial<Record<SessionStatus, number>>>;
}

/** What cleanup walks: each list reads a partial index, so its cost follows what it finds. */
export interface SessionSweeps {
  /** Active sessions whose `expires_at` is at or before `now` (and the database's now()), earliest first. */
  listExpiredSessions(now: Date, limit: number): Promise<PreviewSession[]>;
  /** Active sessions of `tier` last seen in use (activity, else activation, else creation) before `idleSince`. */
  listIdleSessions(tier: Tier, idleSince: Date, limit: number): Promise<PreviewSession[]>;
  /** Sessions still queued/creating/starting that were created before `createdBefore`, oldest first. */
  listStuckSessions(createdBefore: Date, limit: number): Promise<PreviewSession[]>;
  /**
   * Moves a session still provisioning and created before `createdBefore` to `error`
   * with `error_message` "provisioning timed out at <status it had>", in one statement.
   * Null when it is no longer provisioning (or not that old).
   */
  failStuckSession(sessionId: string, createdBefore: Date): Promise<PreviewSession | null>;
  /** Sessions still queued/creating/starting created at or after `createdAfter`, by (createdAt, id), after `cursor`. */
  listProvisioningSessions(createdAfter: Date, limit: number, cursor?: SessionCursor): Promise<PreviewSession[]>;
  /** Active sessions by id, after `afterId`: the machine reconciliation walks them in pages. */
  listActiveSessions(limit: number, afterId?: string): Promise<PreviewSession[]>;
  /** Sessions left `ending` since before `updatedBefore` (their cleanup died or failed midway), oldest first. */
  listStaleEndingSessions(updatedBefore: Date, limit: number): Promise<PreviewSession[]>;
  /**
   * Claims a stale `ending` session for finishing it (touches updated_at when it is still
   * `ending` and not updated since `updatedBefore`); null when another caller has it or it moved on.
   */
  claimStaleEnding(sessionId: string, updatedBefore: Date): Promise<PreviewSession | null>;
}

/** Where a page of a listing ended (its last row's sort time, to the microsecond, and id): the next page starts below it. */
export interface PageCursor {
  at: string;
  id: string;
}

export interface ListQuery {
  ownerId: string | null;
  limit: number;
  before?: PageCursor;
}

export interface Page<T> {
  items: T[];
  /** Where the next page starts; null on the last page. */
  next: PageCursor | null;
}

/** Where a page of `listProvisioningSessions` ended: pass it to get the next page. */
export interface SessionCursor {
  createdAt: string;
  id: string;
}

/** What `extendSession` did. `maxUntil`: the latest `expires_at` the session's tier allows. */
export type ExtendSessionResult =
  | { outcome: 'extended'; session: PreviewSession; maxUntil: string }
  | { outcome: 'not-found' }
  | { outcome: 'not-active' | 'expired' | 'beyond-max'; session: PreviewSession; maxUntil: string };

/** Limits a project's files must stay within (config MAX_PROJECT_FILES, MAX_FILE_BYTES, MAX_PROJECT_BYTES). */
export interface ProjectFileLimits {
  maxFiles: number;
  maxFileBytes: number;
  maxProjectBytes: number;
}

/** A change to a project's files (paths already normalised, each at most once). */
export interface FilesChange {
  write: ProjectFile[];
  delete: string[];
  /** Per path, the ETag its file must have now (If-Match), or `*`: it must exist. */
  expected?: Record<string, string>;
}

/** A file as written: its real bytes and its ETag (the hex SHA-256 of its bytes). */
export interface WrittenFile {
  path: string;
  created: boolean;
  fileBytes: number;
  etag: string;
}

/** What `applyProjectFiles` did, or the first reason it changed nothing; sizes are real bytes, counts the project's after the change. */
export type ApplyFilesResult =
  | { outcome: 'applied'; fileCount: number; projectBytes: number; written: WrittenFile[]; deleted: string[] }
  | { outcome: 'no-project' }
  | { outcome: 'file-too-large'; path: string; fileBytes: number }
  | { outcome: 'precondition-failed'; path: string; etag: string | null }
  | { outcome: 'no-file'; path: string }
  | { outcome: 'too-many-files'; fileCount: number }
  | { outcome: 'project-too-large'; projectBytes: number };

/** A project file without its content. */
export interface ProjectFileInfo {
  path: string;
  /** Real bytes: UTF-8 for text, the decoded size for binary. */
  bytes: number;
  binary: boolean;
  updatedAt: string;
}

/** A session asked for by a user: always `queued`, always owned. */
export interface NewOwnedSession {
  id: string;
  projectId: string;
  ownerId: string;
  tier: Tier;
  resourceLimits: ResourceLimits;
}

/**
 * What `createSessionWithinQuota` did. `live`: the owner's live sessions after it (or as
 * refused); `nextExpiresAt`: the soonest `expires_at` among them, when one is active.
 */
/** What `createProjectWithinQuota` did. `count`: the owner's projects after it (or as refused). */
export type CreateProjectWithinQuotaResult =
  | { outcome: 'created'; project: Project; count: number }
  | { outcome: 'over-quota'; count: number; limit: number };

export type CreateSessionWithinQuotaResult =
  | { outcome: 'created'; session: PreviewSession; live: number }
  | { outcome: 'over-quota'; live: number; limit: number; nextExpiresAt: string | null };
