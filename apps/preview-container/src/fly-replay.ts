import { requestText } from '@velocity/runtime';

/**
 * On Fly.io, Fly's proxy sends a request for any preview to any healthy machine
 * of the preview app. A machine that gets one for another route id answers
 * `fly-replay: instance=<machine>`, and the proxy replays it to the machine that
 * serves that route. The route → machine lookup asks the api (with the
 * machine's routes token, which it has from its first second, pooled or not)
 * and keeps a found machine for a while.
 */
export type Replay = { kind: 'replay'; header: string } | { kind: 'unknown' } | { kind: 'gone' };

/** The request header Fly's proxy adds to a replayed request (`instance=…;state=…`). */
export const FLY_REPLAY_SRC_HEADER = 'fly-replay-src';

export class FlyReplay {
  private readonly cache = new Map<string, { replay: Replay; until: number }>();

  constructor(
    /** `<api>/v1/routes`: answers `{ routeId, machineId }`, 404 for a route no machine serves, 410 for an ended session. */
    private readonly routesUrl: string,
    /** This machine's routes token: the api answers route lookups to machines only. */
    private readonly routesToken: string,
    /** This machine's own id: a lookup naming it is never replayed (a loop). */
    private readonly ownMachineId: string,
    /** How long a found machine is kept: a preview whose session ended is answered 410 at most this much later. */
    private readonly ttlMs = 10_000,
  ) {}

  /** Fly sets FLY_MACHINE_ID in every machine; without it there is no Fly proxy to replay through. */
  static fromEnv(env: NodeJS.ProcessEnv): FlyReplay | null {
    if (!env.FLY_MACHINE_ID || !env.ROUTES_URL || !env.ROUTES_TOKEN) return null;
    return new FlyReplay(env.ROUTES_URL, env.ROUTES_TOKEN, env.FLY_MACHINE_ID);
  }

  /**
   * Where a request for `routeId`, which this machine does not serve, goes. A
   * request Fly already replayed (`replayedFrom`: its fly-replay-src) is not
   * sent on again: the lookup that sent it here was out of date, and a second
   * hop could loop.
   */
  async resolve(routeId: string, replayedFrom?: string): Promise<Replay> {
    if (replayedFrom) {
      this.cache.delete(routeId);
      return { kind: 'unknown' };
    }
    const cached = this.cache.get(routeId);
    if (cached && cached.until > Date.now()) return cached.replay;
    // Node's HTTP client: the api may be on a Unix socket (`http://unix:<socket>:<path>`).
    const res = await requestText(`${this.routesUrl}/${encodeURIComponent(routeId)}`, {
      headers: { authorization: `Bearer ${this.routesToken}` },
      signal: AbortSignal.timeout(3000),
    });
    if (res.status === 410) return { kind: 'gone' };
    if (res.status !== 200) return { kind: 'unknown' };
    const machineId = (JSON.parse(res.body) as { machineId: string }).machineId;
    if (machineId === this.ownMachineId) return { kind: 'unknown' };
    const replay: Replay = { kind: 'replay', header: `instance=${machineId}` };
    // Only a machine is worth keeping; a route not found yet may be starting.
    this.cache.set(routeId, { replay, until: Date.now() + this.ttlMs });
    return replay;
  }
}
