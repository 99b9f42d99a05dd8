import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { POOL_START_TIMEOUT_MS, profileMachineEnv, resourceLimitsOf, sleep, type Config, type DependencyPoolSize, type PoolTarget, type PooledMachine } from '@velocity/contracts';
import { requestText, type Logger } from '@velocity/runtime';
import { type MachineProvider, type MachineSpec, type WarmPool } from '@velocity/machines';
import type Redis from 'ioredis';
import { pooledMachineEnv } from '../machine-env';

export interface RefillPoolDeps {
  config: Config;
  provider: MachineProvider;
  pool: WarmPool;
  targets: PoolTarget[];
  /** Machines kept for the most recently used dependency profiles (see dependency-pool.ts); none without. */
  dependencyPool?: DependencyPoolSize;
  /** For the refill lock: one refill at a time across provisioners, so no pool goes above its max. */
  redis: Redis;
  logger: Logger;
  /** Name of this worker; its machines are the ones it drains on shutdown. */
  workerName: string;
  /** Whether sessions are being provisioned now (any provisioner); refills wait for a quiet moment. */
  provisioning?: () => Promise<boolean>;
}

const NIL_UUID = '00000000-0000-0000-0000-000000000000';
/** Pooled machines started at once by one refill. */
const POOL_START_CONCURRENCY = 2;
/**
 * Before each batch a refill waits while sessions are being provisioned: a
 * machine's start is a second of CPU and its spawn stalls this process, and the
 * sessions in flight are the ones a user waits for. Never longer than this, so
 * steady traffic cannot keep the pool empty.
 */
const YIELD_TO_SESSIONS_MAX_MS = 5_000;
const YIELD_POLL_MS = 100;

/**
 * Tops each pool up to its minimum: starts machines on their template (no
 * project's data) or on a recently used dependency profile (a set and the
 * config files its projects share), waits until Vite serves, then lists them
 * as ready. Never above a pool's max, nor the provider above the machine
 * budget. Machines of profiles no longer among the recent ones are destroyed.
 */
export class RefillPool {
  constructor(private readonly deps: RefillPoolDeps) {}

  async execute(): Promise<{ started: number }> {
    const { redis, config } = this.deps;
    const lock = `${config.QUEUE_PREFIX}:pool:refill-lock`;
    if ((await redis.set(lock, this.deps.workerName, 'PX', POOL_START_TIMEOUT_MS, 'NX')) !== 'OK') return { started: 0 };
    try {
      // Even counting the machines (the provider lists them all) waits for a quiet moment.
      await this.yieldToSessions();
      const targets = [...this.deps.targets, ...(await this.profileTargets())];
      const members = await this.retireStaleProfiles(targets);
      let budget = config.MACHINE_BUDGET - (await this.deps.provider.list()).length;
      const wanted: PoolTarget[] = [];
      for (const target of targets) {
        const have = members.filter((m) => isOfTarget(m, target)).length;
        const want = Math.min(Math.max(0, target.min - have), target.max - have, budget);
        budget -= Math.max(0, want);
        for (let i = 0; i < want; i++) wanted.push(target);
      }
      // A few at a time: a Vite start is a second of CPU, and sessions being served come first.
      let started = 0;
      for (let i = 0; i < wanted.length; i += POOL_START_CONCURRENCY) {
        await this.yieldToSessions();
        const batch = await Promise.all(wanted.slice(i, i + POOL_START_CONCURRENCY).map((target) => this.startOne(target)));
        started += batch.filter(Boolean).length;
      }
      if (wanted.length > 0) this.deps.logger.info('pool refilled', { started, failed: wanted.length - started });
      return { started };
    } finally {
      await redis.del(lock);
    }
  }

  /** One pool per recently used dependency profile whose set is still installed. */
  private async profileTargets(): Promise<PoolTarget[]> {
    const size = this.deps.dependencyPool;
    if (!size || size.sets === 0 || size.machinesPerSet === 0) return [];
    const profiles = await this.deps.pool.recentProfiles(size.sets, this.deps.config.DEPENDENCY_POOL_IDLE_MS);
    const gone = profiles.filter((profile) => !existsSync(profile.dependencies.nodeModulesDir));
    await this.deps.pool.forgetProfiles(gone.map((profile) => profile.key));
    return profiles
      .filter((profile) => !gone.includes(profile))
      .map((profile) => ({ templateType: profile.templateType, tier: profile.tier, min: size.machinesPerSet, max: size.machinesPerSet, profile }));
  }

  /** Destroys the ready machines of profiles that are no longer pooled; returns the members left. */
  private async retireStaleProfiles(targets: PoolTarget[]): Promise<PooledMachine[]> {
    const members = await this.deps.pool.members();
    const pooled = new Set(targets.flatMap((target) => (target.profile ? [target.profile.key] : [])));
    const stale = members.filter((m) => m.profile && m.state === 'ready' && !pooled.has(m.profile));
    for (const machine of stale) {
      await this.deps.pool.remove(machine);
      await this.deps.provider.destroy(machine.machineId).catch(() => undefined);
    }
    if (stale.length > 0) this.deps.logger.info('pooled machines of unused dependency sets destroyed', { destroyed: stale.length });
    return members.filter((m) => !stale.includes(m));
  }

  private async yieldToSessions(): Promise<void> {
    const { provisioning } = this.deps;
    if (!provisioning) return;
    const until = Date.now() + YIELD_TO_SESSIONS_MAX_MS;
    while (Date.now() < until && (await provisioning().catch(() => false))) await sleep(YIELD_POLL_MS);
  }

  private async startOne(target: PoolTarget): Promise<boolean> {
    const { provider, pool, config, logger } = this.deps;
    const routeId = randomUUID();
    const claimToken = randomBytes(24).toString('hex');
    const { profile } = target;
    const base = { routeId, claimToken, templateType: target.templateType, tier: target.tier, startedBy: this.deps.workerName, ...(profile ? { profile: profile.key } : {}) };
    let machine: Omit<PooledMachine, 'state' | 'since'> | null = null;
    try {
      const spec: MachineSpec = {
        sessionId: routeId,
        projectId: NIL_UUID,
        templateType: target.templateType,
        resourceLimits: resourceLimitsOf(target.tier),
        background: true,
        env: { ...pooledMachineEnv(config, provider, { routeId, templateType: target.templateType, claimToken }), ...(profile ? profileMachineEnv(profile) : {}) },
        ...(profile ? { dependencies: profile.dependencies } : {}),
      };
      const created = await provider.create(spec);
      machine = { ...base, machineId: created.id, url: created.url };
      await pool.starting(machine);
      const started = await provider.waitStarted(created, config.MACHINE_START_TIMEOUT_MS);
      await waitServing(started.url, POOL_START_TIMEOUT_MS);
      await pool.ready(machine);
      return true;
    } catch (err) {
      // A profile whose machine cannot start (its config needs a source file) is not tried again until a session uses it.
      const forgotten = profile ? await pool.forgetProfiles([profile.key]).then(() => true, () => false) : false;
      logger.warn('pooled machine did not start', { routeId, profile: profile?.key, profileForgotten: forgotten, err: err as Error });
      if (machine) {
        await pool.remove(machine).catch(() => undefined);
        await provider.destroy(machine.machineId).catch(() => undefined);
      }
      return false;
    }
  }
}

/** Until /health says the dev server serves (files loaded, Vite warm). */
async function waitServing(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    // Node's HTTP client: a sandboxed machine is on a Unix socket (`http://unix:<socket>:`).
    const res = await requestText(`${url}/health`, { signal: AbortSignal.timeout(2000) }).catch(() => null);
    if (res?.status === 200) return;
    const startFailure = res ? startFailureOf(res.body) : undefined;
    if (startFailure) throw new Error(`The dev server could not start: ${startFailure}`);
    await sleep(100);
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${url}/health to answer 200`);
}

function startFailureOf(body: string): string | undefined {
  try {
    const reason = (JSON.parse(body) as { startFailure?: unknown }).startFailure;
    return typeof reason === 'string' ? reason : undefined;
  } catch {
    return undefined;
  }
}

function isOfTarget(machine: PooledMachine, target: PoolTarget): boolean {
  return target.profile ? machine.profile === target.profile.key : !machine.profile && machine.templateType === target.templateType && machine.tier === target.tier;
}

/** On shutdown: the unclaimed machines this worker started leave the pool and are destroyed. */
export async function drainPool(deps: Pick<RefillPoolDeps, 'pool' | 'provider' | 'logger' | 'workerName'>): Promise<number> {
  const own = (await deps.pool.members()).filter((m) => m.startedBy === deps.workerName);
  await Promise.all(
    own.map(async (machine) => {
      await deps.pool.remove(machine);
      await deps.provider.destroy(machine.machineId).catch(() => undefined);
    }),
  );
  if (own.length > 0) deps.logger.info('pool drained', { destroyed: own.length });
  return own.length;
}
