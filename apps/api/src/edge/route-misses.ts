import { isIPv6 } from 'node:net';

/** What a route id was found to be, remembered: no session at all, or one that has ended. */
export type MissKind = 'unknown' | 'gone';

/** Entries each map holds at most; past it the oldest goes (a Map iterates in insertion order). */
const MAX_ENTRIES = 20_000;
const WINDOW_MS = 60_000;

/**
 * Lookups at the local edge that find no live session, made cheap:
 * - a short negative cache: a route id just found unknown (or ended) is answered
 *   from memory for `cacheMs`, so repeats of it cost no query;
 * - a budget of misses per client address (an IPv6 client's /64) per minute:
 *   beyond it, lookups that memory cannot answer are refused (429) without a query.
 * In memory per api process: a Redis round trip per request would cost about what
 * the query it saves does, and a client spread over replicas gets at most one
 * budget per replica, still a bound.
 *
 * A route id negatively cached just before its session got its machine (only the
 * session's owner knows the id before `ready`) answers 404 for at most `cacheMs`:
 * the provisioner's verification asks again every 50 ms, so it waits that long at
 * worst, never fails for it. Hence the short TTL.
 */
export class RouteMisses {
  private readonly cached = new Map<string, { kind: MissKind; until: number }>();
  private readonly clients = new Map<string, { window: number; misses: number }>();

  constructor(
    private readonly cacheMs: number,
    private readonly missesPerMinute: number,
  ) {}

  /** The remembered answer for a route id, or null. */
  cachedMiss(routeId: string, now: number): MissKind | null {
    const entry = this.cached.get(routeId);
    if (!entry) return null;
    if (entry.until > now) return entry.kind;
    this.cached.delete(routeId);
    return null;
  }

  /** Seconds until this client may look up again, or 0 when it still has misses left this minute. */
  refusedFor(clientKey: string, now: number): number {
    const entry = this.clients.get(clientKey);
    const window = Math.floor(now / WINDOW_MS);
    if (!entry || entry.window !== window || entry.misses < this.missesPerMinute) return 0;
    return Math.max(1, Math.ceil(((window + 1) * WINDOW_MS - now) / 1000));
  }

  /** Remembers a route id found unknown or ended; an unknown one counts against its client's budget. */
  record(routeId: string, kind: MissKind, clientKey: string, now: number): void {
    if (this.cacheMs > 0) bounded(this.cached).set(routeId, { kind, until: now + this.cacheMs });
    if (kind !== 'unknown') return;
    const window = Math.floor(now / WINDOW_MS);
    const entry = this.clients.get(clientKey);
    if (entry && entry.window === window) entry.misses++;
    else bounded(this.clients).set(clientKey, { window, misses: 1 });
  }
}

/** The map, with room for one more entry. */
function bounded<V>(map: Map<string, V>): Map<string, V> {
  if (map.size >= MAX_ENTRIES) map.delete(map.keys().next().value!);
  return map;
}

/**
 * Whose budget a request spends: its IPv4 address, or the /64 of its IPv6 one
 * (a single client commonly holds a whole /64). An IPv4-mapped IPv6 address is
 * its IPv4 address.
 */
export function clientKeyOf(address: string | undefined): string {
  if (!address) return 'unknown';
  if (address.startsWith('::ffff:') && address.includes('.')) return address.slice(7);
  if (!isIPv6(address)) return address;
  const [head, tail = ''] = address.split('::');
  const front = head ? head.split(':') : [];
  const back = tail ? tail.split(':') : [];
  const groups = address.includes('::') ? [...front, ...Array<string>(8 - front.length - back.length).fill('0'), ...back] : front;
  return `${groups.slice(0, 4).map((g) => g.toLowerCase().replace(/^0+(?=.)/, '')).join(':')}::/64`;
}
