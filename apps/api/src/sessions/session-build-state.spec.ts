import { randomUUID } from 'node:crypto';
import { EventLog, createRedis } from '@velocity/ops';
import { type Diagnostic } from '@velocity/contracts';
import { testConfig } from '@velocity/testing';
import { SessionBuildStates } from './session-build-state';

/** The build state read back from a session's event log (real Redis): the newest `diagnostics`, else `ready`'s. */
describe('SessionBuildStates', () => {
  const config = testConfig();
  const redis = createRedis(config.REDIS_URL);
  const events = new EventLog(redis, config.QUEUE_PREFIX, 60);
  const builds = new SessionBuildStates(redis, events);
  const broken: Diagnostic = { kind: 'build', file: 'src/App.jsx', line: 1, message: 'Failed to resolve import "x"' };
  const keys: string[] = [];
  const session = () => {
    const id = randomUUID();
    keys.push(events.key(id));
    return id;
  };
  const ready = (sessionId: string, diagnostics?: Diagnostic[]) =>
    events.append({ type: 'ready', sessionId, at: Date.now(), previewUrl: `http://${sessionId}.localhost/`, expiresAt: new Date().toISOString(), ...(diagnostics ? { diagnostics } : {}) });
  const progress = (sessionId: string) => events.append({ type: 'progress', sessionId, at: Date.now(), step: 'verify-url', state: 'started', attempt: 1 });

  afterAll(async () => {
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });

  it('is unknown before ready, then what ready said, then what the last report said', async () => {
    const id = session();
    await events.append({ type: 'queued', sessionId: id, at: Date.now() });
    expect(await builds.current(id)).toBeNull();
    await ready(id, [broken]);
    expect(await builds.current(id)).toMatchObject({ state: 'errors', diagnostics: [broken] });
    expect(await builds.report(id, { state: 'ok', diagnostics: [], at: 1 })).toBe(true);
    expect(await builds.current(id)).toMatchObject({ state: 'ok', diagnostics: [] });
    // Said again: nothing stored.
    expect(await builds.report(id, { state: 'ok', diagnostics: [], at: 2 })).toBe(false);
    expect((await events.read(id)).map((e) => e.event.type)).toEqual(['queued', 'ready', 'diagnostics']);
  });

  it('a ready without diagnostics (from before they existed) says nothing; a report before ready is the state', async () => {
    const id = session();
    await ready(id);
    expect(await builds.current(id)).toBeNull();
    const other = session();
    expect(await builds.report(other, { state: 'errors', diagnostics: [broken], at: 1 })).toBe(true);
    expect(await builds.current(other)).toMatchObject({ state: 'errors', diagnostics: [broken] });
  });

  it('finds the last state behind more events than one page of the log', async () => {
    const id = session();
    await builds.report(id, { state: 'errors', diagnostics: [broken], at: 1 });
    for (let i = 0; i < 120; i++) await progress(id);
    expect(await builds.current(id)).toMatchObject({ state: 'errors', diagnostics: [broken] });
  });
});
