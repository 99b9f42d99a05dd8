import type { Machine } from '@velocity/machines';
import type { PreviewSession } from '@velocity/session-store';
import { SWEEP_CONCURRENCY, eachLimited, type CleanupDeps } from './cleanup-deps';
import { EndSession } from './end-session';

export type DestroyOrphansDeps = Pick<CleanupDeps, 'store' | 'provider' | 'events' | 'logger' | 'config' | 'redis' | 'pool'>;

export interface DestroyOrphansResult {
  /** Machines destroyed because no live session owns them. */
  destroyed: number;
  /** Machines without a live session still within ORPHAN_GRACE_MS of being first seen so. */
  waiting: number;
  /** Active sessions ended because their machine is gone. */
  machineGone: number;
}

/** Why a machine is an orphan, or null when it must be kept. */
export function orphanReason(machine: Machine, session: PreviewSession | undefined): string | null {
  if (!session) return 'no session row';
  switch (session.status) {
    case 'ended':
    case 'error':
      return `session ${session.status}`;
    case 'active':
      return session.containerId === machine.id ? null : `session runs on ${session.containerId ?? 'no machine'}`;
    default:
      // queued/creating/starting: a provisioner may be making or recording it right now.
      // ending: EndSession is destroying it.
      return null;
  }
}

/**
 * Reconciles the provider's machines with the rows, both ways:
 * - a machine with no live session (row missing, ended or error, or the row
 *   records another machine) is destroyed once it has been seen so for
 *   ORPHAN_GRACE_MS (the first sighting is kept in Redis, so any replica counts
 *   from it); machines of sessions still provisioning or ending are left alone;
 * - an active session whose machine is gone (or not started) is ended with
 *   reason `machine-gone`.
 * Before destroying, a replica claims the machine in Redis and reads the row and
 * the machine again, so replicas do not destroy twice and never a machine that
 * became live in between.
 */
export class DestroyOrphans {
  private readonly endSession: EndSession;

  constructor(private readonly deps: DestroyOrphansDeps) {
    this.endSession = new EndSession(deps);
  }

  async execute(now = Date.now()): Promise<DestroyOrphansResult> {
    // Machines first, rows second: a session that is active after the listing had its machine before it.
    const machines = await this.deps.provider.list();
    const result: DestroyOrphansResult = { destroyed: 0, waiting: 0, machineGone: 0 };
    await this.destroyOrphans(machines, now, result);
    await this.endSessionsWithoutMachine(machines, result);
    return result;
  }

  private async destroyOrphans(machines: Machine[], now: number, result: DestroyOrphansResult): Promise<void> {
    const { store, config } = this.deps;
    for (let i = 0; i < machines.length; i += config.CLEANUP_BATCH_SIZE) {
      const page = machines.slice(i, i + config.CLEANUP_BATCH_SIZE);
      // A machine is keyed by the route id of its URL: a session's own id, or a pooled machine's.
      const keys = page.map((m) => m.sessionId);
      const byId = new Map((await store.getSessionsByIds(keys)).map((s) => [s.id, s]));
      const byRoute = new Map((await store.getSessionsByRouteIds(keys)).map((s) => [s.routeId!, s]));
      await eachLimited(page, SWEEP_CONCURRENCY, async (machine) => {
        const reason = orphanReason(machine, byRoute.get(machine.sessionId) ?? byId.get(machine.sessionId));
        if (!reason || (await this.pooled(machine))) return;
        try {
          if (!(await this.graceOver(machine.id, now))) {
            result.waiting += 1;
            return;
          }
          if (await this.destroyOrphan(machine)) result.destroyed += 1;
        } catch (err) {
          this.deps.logger.error('could not destroy orphan machine', { sessionId: machine.sessionId, machineId: machine.id, err });
        }
      });
    }
  }

  /** Claim, look again, destroy: false when another replica has it, or it is no orphan any more, or it is gone. */
  private async destroyOrphan(machine: Machine): Promise<boolean> {
    const { redis, store, provider, logger } = this.deps;
    const claimed = await redis.set(this.key('orphan-destroy', machine.id), String(process.pid), 'PX', 60_000, 'NX');
    if (claimed !== 'OK') return false;
    const owner = (await store.getSessionByRoute(machine.sessionId)) ?? (await store.getSession(machine.sessionId));
    const reason = orphanReason(machine, owner ?? undefined);
    const still = await provider.get(machine.id);
    if (!reason || !still || (await this.pooled(machine))) {
      await redis.del(this.key('orphan-seen', machine.id));
      return false;
    }
    await provider.destroy(machine.id);
    await redis.del(this.key('orphan-seen', machine.id));
    logger.warn('orphan machine destroyed', { sessionId: machine.sessionId, machineId: machine.id, reason });
    return true;
  }

  /** A warm-pool machine the pool still answers for is no orphan; one it does not know is. */
  private async pooled(machine: Machine): Promise<boolean> {
    return (await this.deps.pool?.knows(machine.id)) ?? false;
  }

  /** Whether the machine was first seen without a live session at least ORPHAN_GRACE_MS ago (records the first sighting). */
  private async graceOver(machineId: string, now: number): Promise<boolean> {
    const { redis, config } = this.deps;
    const key = this.key('orphan-seen', machineId);
    const ttl = config.ORPHAN_GRACE_MS + 2 * config.CLEANUP_SWEEP_EVERY_MS + 60_000;
    const first = await redis.set(key, String(now), 'PX', ttl, 'NX');
    const seenAt = first === 'OK' ? now : Number(await redis.get(key));
    return Number.isFinite(seenAt) && seenAt > 0 && now - seenAt >= config.ORPHAN_GRACE_MS;
  }

  private async endSessionsWithoutMachine(machines: Machine[], result: DestroyOrphansResult): Promise<void> {
    const { store, provider, config, logger } = this.deps;
    const listed = new Map(machines.map((m) => [m.id, m]));
    let afterId: string | undefined;
    for (;;) {
      const page = await store.listActiveSessions(config.CLEANUP_BATCH_SIZE, afterId);
      await eachLimited(page, SWEEP_CONCURRENCY, async (session) => {
        try {
          if (session.containerId && listed.get(session.containerId)?.state === 'started') return;
          // Not in the listing: it may have been made after it. Ask for this one machine.
          const machine = session.containerId ? await provider.get(session.containerId) : null;
          if (machine?.state === 'started') return;
          logger.warn('machine of active session is gone', { sessionId: session.id, machineId: session.containerId, state: machine?.state ?? 'missing' });
          if ((await this.endSession.execute(session.id, 'machine-gone')) === 'ended') result.machineGone += 1;
        } catch (err) {
          logger.error('could not check the machine of a session', { sessionId: session.id, err });
        }
      });
      if (page.length < config.CLEANUP_BATCH_SIZE) break;
      afterId = page[page.length - 1].id;
    }
  }

  private key(kind: string, machineId: string): string {
    return `${this.deps.config.QUEUE_PREFIX}:cleanup:${kind}:${machineId}`;
  }
}
