import { z } from 'zod';
import { ConfigError } from './config';
import { TEMPLATE_TYPES } from './templates';
import { projectFileSchema } from './project-files';
import { tierSchema, type Tier } from './queues';
import type { DependencyProfile } from './dependency-pool';

/** A pre-started preview machine waiting for a session (or still starting). */
export interface PooledMachine {
  machineId: string;
  url: string;
  /** The id its Vite serves under (`/p/<routeId>/`); the claiming session's preview URL uses it. */
  routeId: string;
  /** What the machine wants to see before it lets a session claim it. */
  claimToken: string;
  templateType: string;
  tier: Tier;
  /** Key of the dependency profile it started on (dependency-pool.ts); none for a template machine. */
  profile?: string;
  /** Worker that started it: on shutdown each drains its own. */
  startedBy: string;
  state: 'starting' | 'ready';
  since: number;
}

/**
 * The claim of a pooled machine: `POST /__pool/claim` with the machine's claim
 * token names the session it now serves, with that session's access to the api.
 * `files` and `filesCursor` (optional, sent together): the project's files and
 * the file-changes cursor they are current to, so the machine needs no load of
 * its own; without them it fetches the files from `filesUrl`.
 */
export const POOL_CLAIM_PATH = '/__pool/claim';
/** Largest claim body a machine reads (the provisioner leaves bigger projects' files out). */
export const POOL_CLAIM_MAX_BYTES = 4 * 1024 * 1024;

export const poolClaimSchema = z
  .object({
    sessionId: z.uuid(),
    projectId: z.uuid(),
    filesUrl: z.url({ protocol: /^https?$/ }),
    machineToken: z.string().min(1),
    files: z.array(projectFileSchema).optional(),
    filesCursor: z.string().regex(/^\d+-\d+$/, 'must be a stream id').optional(),
  })
  .refine((claim) => (claim.files === undefined) === (claim.filesCursor === undefined), { message: 'files and filesCursor come together', path: ['filesCursor'] });
export type PoolClaim = z.infer<typeof poolClaimSchema>;

/** One pool: a template and tier (and a dependency profile, or none), with its size bounds. */
export interface PoolTarget {
  templateType: string;
  tier: Tier;
  min: number;
  max: number;
  profile?: DependencyProfile;
}

/** Which pool a machine is in: template machines by template and tier, the others by profile. */
export type PoolKind = Pick<PooledMachine, 'templateType' | 'tier' | 'profile'>;

/** A machine that has been starting longer than this is not the pool's any more (its starter died). */
export const POOL_START_TIMEOUT_MS = 120_000;

/**
 * WARM_POOL: `react:2-4,vue/pro:0-2` — per template (and tier, default free),
 * the least and most pre-started machines. Empty: no pool.
 */
export function parseWarmPool(value: string | undefined): PoolTarget[] {
  if (!value) return [];
  return value.split(',').map((part) => {
    const match = part.trim().match(/^([a-z-]+)(?:\/([a-z]+))?:(\d+)-(\d+)$/);
    if (!match) throw new ConfigError('WARM_POOL', `has "${part}"; write template[/tier]:min-max, e.g. react:2-4,vue/pro:0-2`);
    const [, templateType, tierName = 'free', min, max] = match;
    if (!(TEMPLATE_TYPES as readonly string[]).includes(templateType)) throw new ConfigError('WARM_POOL', `names unknown template "${templateType}"`);
    const tier = tierSchema.safeParse(tierName);
    if (!tier.success) throw new ConfigError('WARM_POOL', `names unknown tier "${tierName}"`);
    if (Number(min) > Number(max)) throw new ConfigError('WARM_POOL', `has min above max in "${part}"`);
    return { templateType, tier: tier.data, min: Number(min), max: Number(max) };
  });
}
