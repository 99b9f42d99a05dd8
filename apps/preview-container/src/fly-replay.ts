import { requestText, serverBaseOf } from '@velocity/runtime';

/**
 * On Fly.io, a request may land on the wrong machine (Fly's proxy balances over
 * the app's machines). This answers it with `fly-replay: instance=<machine>`,
 * which makes Fly's proxy replay it to the machine of that session. The
 * session → machine lookup asks the api once per session and keeps the answer.
 */
export type Replay = { kind: 'replay'; header: string } | { kind: 'unknown' } | { kind: 'gone' };

export class FlyReplay {
  private readonly cache = new Map<string, { replay: Replay; until: number }>();

  constructor(
    /** `<api>/v1/routes`: answers `{ routeId, machineId }`, 404 for an unknown session, 410 for an ended one (or when this machine's own session has ended). */
    private readonly routesUrl: string,
    private readonly ttlMs = 60_000,
    /** This machine's MACHINE_TOKEN: the api answers route lookups to machines only. */
    private readonly machineToken?: string,
  ) {}

  /** Fly sets FLY_MACHINE_ID in every machine; without it there is no Fly proxy to replay through. */
  static fromEnv(env: NodeJS.ProcessEnv, filesUrl: string, machineToken = env.MACHINE_TOKEN): FlyReplay | null {
    if (!env.FLY_MACHINE_ID) return null;
    return new FlyReplay(env.ROUTES_URL ?? `${serverBaseOf(filesUrl)}/v1/routes`, 60_000, machineToken);
  }

  async resolve(sessionId: string): Promise<Replay> {
    const cached = this.cache.get(sessionId);
    if (cached && cached.until > Date.now()) return cached.replay;
    const headers: Record<string, string> = this.machineToken ? { authorization: `Bearer ${this.machineToken}` } : {};
    // Node's HTTP client: the api may be on a Unix socket (`http://unix:<socket>:<path>`).
    const res = await requestText(`${this.routesUrl}/${encodeURIComponent(sessionId)}`, { headers, signal: AbortSignal.timeout(3000) });
    if (res.status !== 200) return refusedAsGone(res) ? { kind: 'gone' } : { kind: 'unknown' };
    const replay: Replay = { kind: 'replay', header: `instance=${(JSON.parse(res.body) as { machineId: string }).machineId}` };
    // Only a machine is worth keeping; a session not found yet may be starting.
    this.cache.set(sessionId, { replay, until: Date.now() + this.ttlMs });
    return replay;
  }
}

/**
 * Whether a refused lookup says the asked session has ended: a 410 about the
 * route. A 410 naming `authorization` is about this machine's own token (its
 * session has ended), which says nothing about the session asked for.
 */
function refusedAsGone(res: { status: number; body: string }): boolean {
  return res.status === 410 && (parseJson(res.body) as { field?: unknown } | null)?.field !== 'authorization';
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
