import { DEMO_PROJECT_ID, type Tier } from '@velocity/contracts';
import { type PreviewSession, type Project } from '@velocity/session-store';

/** Who a request acts for: a Supabase user (`sub` of a verified JWT), or the one local user when auth is off. */
export interface AuthUser {
  /** auth.users id: projects.owner_id and preview_sessions.owner_id. */
  id: string;
  /** From the token's `app_metadata.tier` (only the service role can set it); `free` otherwise. */
  tier: Tier;
  /** True only with auth off (no SUPABASE_JWT_SECRET nor SUPABASE_JWKS_URL, outside production). */
  local: boolean;
}

/** The user every request acts as when auth is off. */
export const LOCAL_USER_ID = '00000000-0000-4000-8000-000000000001';
export const LOCAL_USER: AuthUser = Object.freeze({ id: LOCAL_USER_ID, tier: 'pro' as Tier, local: true });

const TIER_RANK: Record<Tier, number> = { free: 0, pro: 1 };

/** Whether a user of tier `has` may ask for a session of tier `wants`. */
export const tierAllows = (has: Tier, wants: Tier) => TIER_RANK[wants] <= TIER_RANK[has];

/**
 * The ownership rules, in one place. Another user's session or project is answered
 * exactly like one that does not exist (404), so ids reveal nothing. With auth off
 * the single local user owns everything.
 */
export const canSeeSession = (user: AuthUser, session: Pick<PreviewSession, 'ownerId'>) =>
  user.local || session.ownerId === user.id;

/** Own projects, and the demo project (no owner), which every user may preview and read. */
export const canReadProject = (user: AuthUser, project: Pick<Project, 'id' | 'ownerId'>) =>
  user.local || project.ownerId === user.id || isDemoProject(project);

/** Own projects only; the demo project is read-only for everyone (403 on writes). */
export const isDemoProject = (project: Pick<Project, 'id' | 'ownerId'>) => project.id === DEMO_PROJECT_ID && project.ownerId === null;
