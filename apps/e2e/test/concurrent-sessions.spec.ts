import { DEMO_PROJECT_ID, sessionEventSchema } from '@velocity/contracts';
import { readSse } from '@velocity/runtime';
import { until } from '../src/browser';
import { postSession, startSystem, type RunningSystem } from '../src/system';

const SESSIONS = 20;

/**
 * The one rule under load: 20 sessions at once, and the first request to each
 * URL, sent the moment `ready` arrives, is served. Never "Session not found".
 */
describe('20 sessions started at once', () => {
  let system: RunningSystem;

  beforeAll(async () => {
    // 20 Vite servers start at once on a small machine: give provisioning room.
    system = await startSystem({ PROVISION_DEADLINE_MS: '180000', MACHINE_START_TIMEOUT_MS: '120000', VERIFY_TIMEOUT_MS: '120000' });
  }, 60_000);

  afterAll(async () => {
    await system?.stop();
  }, 60_000);

  it('all reach ready, and each first request to the URL succeeds', async () => {
    const results = await Promise.all(Array.from({ length: SESSIONS }, () => oneSession(system.baseUrl)));
    const failures = results.filter((r) => r.status !== 200 || !r.servedApp);
    expect(failures).toEqual([]);
    expect(results.filter((r) => r.body.includes('Session not found'))).toHaveLength(0);
    expect(new Set(results.map((r) => r.url)).size).toBe(SESSIONS);
    // One machine each; any other is the one that pre-bundles the template's dependencies in the background, which ends.
    const sessionIds = results.map((r) => r.sessionId).sort();
    expect((await system.machines.list()).filter((m) => sessionIds.includes(m.sessionId)).map((m) => m.sessionId).sort()).toEqual(sessionIds);
    await until('the machines besides the sessions\' to end', async () => (await machinesBesides(sessionIds)).length === 0, 60_000).catch(async (err: Error) => {
      throw new Error(`${err.message}: still running ${(await machinesBesides(sessionIds)).join(', ')}`);
    });
  }, 240_000);

  const machinesBesides = async (sessionIds: string[]) => (await system.machines.list()).filter((m) => !sessionIds.includes(m.sessionId)).map((m) => m.id);
});

async function oneSession(baseUrl: string) {
  const created = await postSession(baseUrl, { projectId: DEMO_PROJECT_ID });
  if (created.status !== 202) throw new Error(`POST answered ${created.status}: ${JSON.stringify(created.body)}`);
  const stream = await fetch(`${baseUrl}${created.body.eventsUrl}`, { signal: AbortSignal.timeout(200_000) });
  for await (const frame of readSse(stream.body!)) {
    const event = sessionEventSchema.parse(JSON.parse(frame.data));
    if (event.type === 'failed') throw new Error(`session ${event.sessionId} failed at ${event.step}: ${event.reason}`);
    if (event.type !== 'ready') continue;
    // No pause, no retry: the first request is the one a browser would send.
    const res = await fetch(event.previewUrl);
    const body = await res.text();
    return { sessionId: event.sessionId, url: event.previewUrl, status: res.status, body: body.slice(0, 200), servedApp: body.includes('/@vite/client') };
  }
  throw new Error(`the event stream of ${created.body.sessionId} closed before ready`);
}
