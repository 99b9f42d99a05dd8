import { Inject, Injectable } from '@nestjs/common';
import type Redis from 'ioredis';
import { buildStateOf, sameDiagnostics, type BuildState, type SessionEvent } from '@velocity/contracts';
import { type EventLog } from '@velocity/ops';
import { EVENT_LOG, REDIS } from '../tokens';

/** Stream entries read back per round trip while looking for the last build state. */
const PAGE = 50;
/** The event log keeps about 500 entries: a scan never needs more pages. */
const MAX_PAGES = 12;

/**
 * A session's build state lives in its event log, the one record clients
 * follow: the newest `diagnostics` event, else `ready` with its `diagnostics`.
 * No second copy to keep in step: a machine's report appends an event only
 * when it says something new, and what `GET /v1/sessions/:id` answers is what
 * the stream last said.
 */
@Injectable()
export class SessionBuildStates {
  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(EVENT_LOG) private readonly events: EventLog,
  ) {}

  /** The session's current build state; null until one is known (before `ready`, with no report yet). */
  async current(sessionId: string): Promise<BuildState | null> {
    const key = this.events.key(sessionId);
    let end = '+';
    for (let page = 0; page < MAX_PAGES; page++) {
      const entries = await this.redis.xrevrange(key, end, '-', 'COUNT', PAGE);
      for (const [, fields] of entries) {
        const state = buildStateOfEvent(JSON.parse(fields[1]) as SessionEvent);
        if (state) return state;
      }
      if (entries.length < PAGE) return null;
      end = `(${entries[entries.length - 1][0]}`;
    }
    return null;
  }

  /**
   * A machine's report: appended as a `diagnostics` event when it differs from
   * the current state, so a report sent again (a retry, a reconnect) is one event.
   * Returns whether it was stored.
   */
  async report(sessionId: string, build: BuildState): Promise<boolean> {
    const current = await this.current(sessionId);
    if ((current ?? buildStateOf([], 0)).state === build.state && sameDiagnostics(current?.diagnostics ?? [], build.diagnostics)) return false;
    // Stamped when stored, by the api's clock: a machine's may be off.
    await this.events.append({ type: 'diagnostics', sessionId, at: Date.now(), state: build.state, diagnostics: build.diagnostics });
    return true;
  }
}

/** The build state an event says, if it says one. */
function buildStateOfEvent(event: SessionEvent): BuildState | null {
  if (event.type === 'diagnostics') return { state: event.state, diagnostics: event.diagnostics, at: event.at };
  if (event.type === 'ready' && event.diagnostics) return buildStateOf(event.diagnostics, event.at);
  return null;
}
