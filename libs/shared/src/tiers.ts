import type { Tier } from './queues';
import type { ResourceLimits } from './session-store';

/** What each tier's machines get and how long a session of it may live. */
export const TIER_LIMITS: Record<Tier, ResourceLimits & { maxDurationSeconds: number }> = {
  free: { cpus: 1, memoryMb: 512, maxDurationSeconds: 60 * 60 },
  pro: { cpus: 2, memoryMb: 2048, maxDurationSeconds: 8 * 60 * 60 },
};

export function resourceLimitsOf(tier: Tier): ResourceLimits {
  const { cpus, memoryMb } = TIER_LIMITS[tier];
  return { cpus, memoryMb };
}
