import type { Config, Tier } from '@velocity/contracts';
import type { AuthUser } from '../auth/auth-user';
import { ApiException } from '../common/api-exception';

type ProjectsVariable = 'QUOTA_FREE_PROJECTS' | 'QUOTA_PRO_PROJECTS';

const projectsVariable = (tier: Tier): ProjectsVariable => (tier === 'pro' ? 'QUOTA_PRO_PROJECTS' : 'QUOTA_FREE_PROJECTS');

/** How many projects the user may own, by tier (QUOTA_FREE_PROJECTS, QUOTA_PRO_PROJECTS); null: no limit (the local user). */
export function maxProjects(config: Config, user: AuthUser): number | null {
  return user.local ? null : config[projectsVariable(user.tier)];
}

/**
 * The answer to a user at their project limit: 403, not 429. Nothing frees a
 * place with time (there is no way to delete a project), so Retry-After would
 * promise what waiting cannot keep; the tier's limit is the way out.
 */
export function overProjectQuota(user: AuthUser, count: number, limit: number): ApiException {
  const variable = projectsVariable(user.tier);
  return new ApiException({
    statusCode: 403,
    error: 'Forbidden',
    message: `You have ${count} projects, the ${user.tier} tier's limit of ${limit} projects (${variable}); reuse one of them (PUT or PATCH its files)`,
    limit: variable,
    max: limit,
    count,
  });
}
