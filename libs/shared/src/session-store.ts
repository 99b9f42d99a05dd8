import type { SessionStatus } from './session-state';
import type { Tier } from './queues';

/** The demo project that exists on every deployment, created on first use. */
export const DEMO_PROJECT_ID = '550e8400-e29b-41d4-a716-446655440000';

export interface Project {
  id: string;
  name: string;
  templateType: string;
  ownerId: string | null;
  createdAt: string;
}

export interface ProjectFile {
  path: string;
  content: string;
}

export interface ResourceLimits {
  cpus: number;
  memoryMb: number;
}

export interface PreviewSession {
  id: string;
  projectId: string;
  status: SessionStatus;
  tier: Tier;
  resourceLimits: ResourceLimits;
  containerId: string | null;
  containerUrl: string | null;
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
  previewUrl?: string;
  errorMessage?: string;
  errorStep?: string;
  /** Sets `expires_at` to the database's now() plus this many seconds. */
  ttlSeconds?: number;
  /** Sets `ended_at` to the database's now(). */
  ended?: boolean;
}

/**
 * The port for everything persistent. Adapters: Postgres (direct SQL) and
 * Supabase (the same SQL functions over RPC). Writes that span several rows or
 * checks are single SQL functions, so each is atomic in both adapters.
 */
export interface SessionStore {
  getProject(projectId: string): Promise<Project | null>;
  /** Creates the project when it does not exist; returns it either way. */
  ensureProject(project: { id: string; name: string; templateType: string }): Promise<Project>;
  /** Inserts the files only when the project has none; returns how many were inserted. */
  seedProjectFiles(projectId: string, files: ProjectFile[]): Promise<number>;
  listProjectFiles(projectId: string): Promise<ProjectFile[]>;

  /** Inserts the session row (with `session.status`) unless it exists; returns the row either way. */
  createSession(session: NewSession): Promise<PreviewSession>;
  getSession(sessionId: string): Promise<PreviewSession | null>;
  /**
   * Moves a session to `to` when its status allows it (see session-state) and
   * applies the patch in the same statement. Returns the updated row, or null
   * when the row is missing or its status did not allow the move.
   */
  transition(sessionId: string, to: SessionStatus, patch?: SessionPatch): Promise<PreviewSession | null>;

  close(): Promise<void>;
}
