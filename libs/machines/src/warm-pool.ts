import type Redis from 'ioredis';
import { z } from 'zod';
import { tierSchema, POOL_START_TIMEOUT_MS, type PoolKind, type PooledMachine, dependencyProfileSchema, type DependencyProfile } from '@velocity/contracts';

/** Profiles remembered at most, the most recently used first (each holds a few KB of config files). */
const PROFILES_KEPT = 64;

const pooledSchema = z.object({
  machineId: z.string(),
  url: z.string(),
  routeId: z.string().uuid(),
  claimToken: z.string(),
  templateType: z.string(),
  tier: tierSchema,
  profile: z.string().optional(),
  startedBy: z.string(),
  state: z.enum(['starting', 'ready']),
  since: z.number(),
});

/** LPOP a ready machine and forget it in one step: two claims never get the same machine. */
const CLAIM_SCRIPT = `
local value = redis.call('LPOP', KEYS[1])
if value then
  local machine = cjson.decode(value)
  redis.call('HDEL', KEYS[2], machine.machineId)
end
return value`;

/**
 * Forget a machine in one step. The ready list holds the very string the
 * registry does (both written by `ready`), so that string is what LREM gets:
 * an entry serialised again (other key order) would match nothing, and a claim
 * would later pop a machine that is gone.
 */
const REMOVE_SCRIPT = `
local value = redis.call('HGET', KEYS[1], ARGV[1])
if value then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('LREM', KEYS[2], 0, value)
end
return value`;

/**
 * The registry of the warm pool, in Redis: a list of ready machines per
 * template and tier (claimed with an atomic pop), and a hash of every machine
 * the pool knows, starting or ready, so cleanup can tell them from orphans.
 */
export class WarmPool {
  constructor(private readonly redis: Redis, private readonly prefix: string) {}

  private readyKey(kind: PoolKind): string {
    return kind.profile ? `${this.prefix}:pool:ready:profile:${kind.profile}` : `${this.prefix}:pool:ready:${kind.templateType}:${kind.tier}`;
  }

  private get profilesKey(): string {
    return `${this.prefix}:pool:profiles`;
  }

  private get profilesUsedKey(): string {
    return `${this.prefix}:pool:profiles:used`;
  }

  private get membersKey(): string {
    return `${this.prefix}:pool:machines`;
  }

  private statKey(name: 'hits' | 'misses', templateType: string): string {
    return `${this.prefix}:pool:${name}:${templateType}`;
  }

  async starting(machine: Omit<PooledMachine, 'state' | 'since'>): Promise<void> {
    await this.redis.hset(this.membersKey, machine.machineId, JSON.stringify({ ...machine, state: 'starting', since: Date.now() }));
  }

  async ready(machine: Omit<PooledMachine, 'state' | 'since'>): Promise<void> {
    const entry = JSON.stringify({ ...machine, state: 'ready', since: Date.now() });
    await this.redis.multi().hset(this.membersKey, machine.machineId, entry).rpush(this.readyKey(machine), entry).exec();
  }

  /** Takes a ready machine of this kind (template and tier, or profile), or null; counts the hit or miss. */
  async claim(kind: PoolKind): Promise<PooledMachine | null> {
    const value = (await this.redis.eval(CLAIM_SCRIPT, 2, this.readyKey(kind), this.membersKey)) as string | null;
    await this.redis.incr(this.statKey(value ? 'hits' : 'misses', kind.templateType));
    return value ? pooledSchema.parse(JSON.parse(value)) : null;
  }

  /** Forgets a machine (destroyed, failed to start, or drained): from the registry and, when ready, from its list. */
  async remove(machine: PoolKind & Pick<PooledMachine, 'machineId'>): Promise<void> {
    await this.redis.eval(REMOVE_SCRIPT, 2, this.membersKey, this.readyKey(machine), machine.machineId);
  }

  /** Notes that a session used this profile now: the pool keeps machines of the most recent ones. */
  async profileUsed(profile: DependencyProfile, now = Date.now()): Promise<void> {
    await this.redis.multi().hset(this.profilesKey, profile.key, JSON.stringify(profile)).zadd(this.profilesUsedKey, now, profile.key).exec();
  }

  /**
   * The `limit` most recently used profiles, used within `idleMs`; profiles
   * idle longer, or beyond the most recent PROFILES_KEPT, are forgotten.
   */
  async recentProfiles(limit: number, idleMs: number, now = Date.now()): Promise<DependencyProfile[]> {
    const stale = [
      ...(await this.redis.zrangebyscore(this.profilesUsedKey, '-inf', `(${now - idleMs}`)),
      ...(await this.redis.zrevrange(this.profilesUsedKey, PROFILES_KEPT, -1)),
    ];
    if (stale.length > 0) await this.forgetProfiles(stale);
    if (limit <= 0) return [];
    const keys = await this.redis.zrevrange(this.profilesUsedKey, 0, limit - 1);
    if (keys.length === 0) return [];
    const values = await this.redis.hmget(this.profilesKey, ...keys);
    return values.flatMap((value) => {
      const parsed = value ? dependencyProfileSchema.safeParse(JSON.parse(value)) : null;
      return parsed?.success ? [parsed.data] : [];
    });
  }

  /** Forgets profiles (their machines could not start, or they went idle). */
  async forgetProfiles(keys: string[]): Promise<void> {
    if (keys.length > 0) await this.redis.multi().zrem(this.profilesUsedKey, ...keys).hdel(this.profilesKey, ...keys).exec();
  }

  async members(): Promise<PooledMachine[]> {
    const values = await this.redis.hvals(this.membersKey);
    return values.map((value) => pooledSchema.parse(JSON.parse(value)));
  }

  /** Whether the pool still answers for this machine (ready, or starting and not given up on). */
  async knows(machineId: string, now = Date.now()): Promise<boolean> {
    const value = await this.redis.hget(this.membersKey, machineId);
    if (!value) return false;
    const entry = pooledSchema.parse(JSON.parse(value));
    return entry.state === 'ready' || now - entry.since < POOL_START_TIMEOUT_MS;
  }

  async size(kind: PoolKind): Promise<number> {
    return this.redis.llen(this.readyKey(kind));
  }

  async stats(templateType: string): Promise<{ hits: number; misses: number }> {
    const [hits, misses] = await this.redis.mget(this.statKey('hits', templateType), this.statKey('misses', templateType));
    return { hits: Number(hits ?? 0), misses: Number(misses ?? 0) };
  }
}
