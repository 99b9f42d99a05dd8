import type { Tier } from './queues';

export interface ResourceLimits {
  cpus: number;
  memoryMb: number;
}

/** What each tier's machines get and how long a session of it may live. */
export const TIER_LIMITS: Record<Tier, ResourceLimits & { maxDurationSeconds: number; idleSeconds: number }> = {
  free: { cpus: 1, memoryMb: 512, maxDurationSeconds: 60 * 60, idleSeconds: 10 * 60 },
  pro: { cpus: 2, memoryMb: 2048, maxDurationSeconds: 8 * 60 * 60, idleSeconds: 30 * 60 },
};

export function resourceLimitsOf(tier: Tier): ResourceLimits {
  const { cpus, memoryMb } = TIER_LIMITS[tier];
  return { cpus, memoryMb };
}

/** How long a session of `tier` may go without activity before cleanup ends it; `override` (IDLE_TIMEOUT_SECONDS) wins. */
export function idleSecondsOf(tier: Tier, override?: number): number {
  return override ?? TIER_LIMITS[tier].idleSeconds;
}
