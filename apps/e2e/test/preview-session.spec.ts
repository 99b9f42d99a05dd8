import { DEMO_PROJECT_ID, PROVISION_STEPS, createRoutesToken, loadConfig, type SessionEvent } from '@velocity/contracts';
import { readSse, requestSession } from '@velocity/runtime';
import { eventsUntilTerminal, postSession, startSystem, type RunningSystem } from '../src/system';

/** The whole path, for real: POST → queue → provisioner → machine → verified URL → SSE `ready`. */
describe('a preview session from POST to a live Vite page', () => {
  let system: RunningSystem;

  beforeAll(async () => {
    system = await startSystem();
  }, 60_000);

  afterAll(async () => {
    await system?.stop();
  });

  it('answers 202 at once, streams every step, and hands out a URL that serves the app', async () => {
    const created = await postSession(system.baseUrl, { projectId: DEMO_PROJECT_ID });
    expect(created.status).toBe(202);
    expect(created.body).toEqual({
      sessionId: expect.stringMatching(/^[0-9a-f-]{36}$/),
      status: 'queued',
      eventsUrl: `/v1/sessions/${created.body.sessionId}/events`,
      sessionUrl: `/v1/sessions/${created.body.sessionId}`,
    });
    const { sessionId } = created.body;

    const { events } = await eventsUntilTerminal(system.baseUrl, sessionId);
    const last = events.at(-1) as Extract<SessionEvent, { type: 'ready' }>;
    expect(last.type).toBe('ready');
    expect(events[0].type).toBe('queued');
    const done = events.filter((e) => e.type === 'progress' && e.state === 'done').map((e) => (e as { step: string }).step);
    expect(done).toEqual([...PROVISION_STEPS]);
    expect(last.previewUrl).toBe(system.previewUrlOf(sessionId));

    const page = await fetch(last.previewUrl);
    const html = await page.text();
    expect(page.status).toBe(200);
    expect(page.headers.get('referrer-policy')).toBe('no-referrer');
    expect(html).toContain('<div id="root"></div>');
    expect(html).toContain('"/@vite/client"');
    expect(html).toContain('"/src/main.jsx"');

    // An old link on the api's origin is sent to the preview's own origin; the api's routes are not served there.
    const legacy = await fetch(`${system.baseUrl}/p/${sessionId}/src/App.jsx?x=1`, { redirect: 'manual' });
    expect(legacy.status).toBe(308);
    expect(legacy.headers.get('location')).toBe(`${last.previewUrl}src/App.jsx?x=1`);
    const apiOnPreviewOrigin = await fetch(`${last.previewUrl}v1/sessions/${sessionId}`, { headers: { accept: 'application/json' } });
    expect(apiOnPreviewOrigin.status).toBe(404); // Vite's answer: the project has no such file
    expect(await apiOnPreviewOrigin.text()).not.toContain(sessionId);

    const app = await fetch(`${last.previewUrl}src/App.jsx`);
    expect(app.status).toBe(200);
    expect(app.headers.get('content-type')).toMatch(/javascript/);
    expect(await app.text()).toContain('count is');

    const css = await fetch(`${last.previewUrl}src/App.css`);
    expect(css.status).toBe(200);
    expect(await css.text()).toContain('.app');

    const row = await fetch(`${system.baseUrl}/v1/sessions/${sessionId}`).then((r) => r.json());
    expect(row).toMatchObject({ id: sessionId, projectId: DEMO_PROJECT_ID, status: 'active', previewUrl: last.previewUrl });
    expect(Date.parse(row.expiresAt)).toBeGreaterThan(Date.now());

    // The machine of the session, as a container on Fly asks before it answers fly-replay (with its routes token).
    const routesToken = createRoutesToken(sessionId, loadConfig(system.env).MACHINE_TOKEN_SECRET, 60);
    const route = await fetch(`${system.baseUrl}/v1/routes/${sessionId}`, { headers: { authorization: `Bearer ${routesToken}` } }).then((r) => r.json());
    expect(route).toEqual({ routeId: sessionId, machineId: `local-${sessionId}` });
    expect((await fetch(`${system.baseUrl}/v1/routes/${sessionId}`)).status).toBe(401);

    // A client that connects after `ready` was emitted still gets the whole story.
    const late = await eventsUntilTerminal(system.baseUrl, sessionId, 5000);
    expect(late.events.map((e) => e.type)).toEqual(events.map((e) => e.type));

    // One that resumes with Last-Event-ID gets only what came after.
    const resumed = await eventsUntilTerminal(system.baseUrl, sessionId, 5000, { 'last-event-id': late.ids[2] });
    expect(resumed.events).toEqual(events.slice(3));
  });

  it('with Accept: text/event-stream, answers the POST with the session\'s events through ready, in one request', async () => {
    const res = await fetch(`${system.baseUrl}/v1/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ projectId: DEMO_PROJECT_ID }),
      signal: AbortSignal.timeout(60_000),
    });
    expect(res.status).toBe(202);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const sessionId = res.headers.get('location')?.match(/^\/v1\/sessions\/([0-9a-f-]{36})$/)?.[1];
    expect(sessionId).toBeDefined();
    const frames: Array<{ id?: string; event?: string; data: string }> = [];
    for await (const frame of readSse(res.body!)) {
      frames.push(frame);
      if (['ready', 'failed'].includes(frame.event ?? '')) break;
    }
    const events = frames.map((f) => JSON.parse(f.data) as SessionEvent);
    expect(events[0]).toMatchObject({ type: 'queued', sessionId });
    expect(events.every((e) => e.sessionId === sessionId)).toBe(true);
    const last = events.at(-1) as Extract<SessionEvent, { type: 'ready' }>;
    expect(last.type).toBe('ready');
    expect((await fetch(last.previewUrl)).status).toBe(200);
    // The same story, with the same ids, on the events URL.
    const stored = await eventsUntilTerminal(system.baseUrl, sessionId!, 5000);
    expect(stored.ids).toEqual(frames.map((f) => f.id));

    // The client helper: one request, and its result names the session.
    const viaHelper = await requestSession({ baseUrls: [system.baseUrl], projectId: DEMO_PROJECT_ID, timeoutMs: 60_000 });
    expect(viaHelper.events[0]).toMatchObject({ type: 'queued', sessionId: viaHelper.sessionId });
    expect(viaHelper.events.at(-1)?.type).toBe('ready');
    expect(viaHelper.reconnects).toBe(0);

    // A bad body is still a JSON 400 naming the field, not a stream.
    const bad = await fetch(`${system.baseUrl}/v1/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ projectId: 'nope' }),
    });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ statusCode: 400, field: 'projectId' });
  });

  it('refuses a bad body with 400 naming the field, and an unknown project with 404', async () => {
    const notUuid = await postSession(system.baseUrl, { projectId: 'not-a-uuid' });
    expect(notUuid.status).toBe(400);
    expect(notUuid.body).toMatchObject({ statusCode: 400, field: 'projectId' });

    const missing = await postSession(system.baseUrl, {});
    expect(missing.status).toBe(400);
    expect(missing.body.field).toBe('projectId');

    const badTier = await postSession(system.baseUrl, { projectId: DEMO_PROJECT_ID, tier: 'platinum' });
    expect(badTier.status).toBe(400);
    expect(badTier.body.field).toBe('tier');

    const notJson = await postSession(system.baseUrl, '{"projectId":');
    expect(notJson.status).toBe(400);
    expect(notJson.body.field).toBe('body');

    const unknown = await postSession(system.baseUrl, { projectId: '00000000-0000-4000-8000-000000000000' });
    expect(unknown.status).toBe(404);
    expect(unknown.body.message).toContain('does not exist');
  });

  it('answers 404 for unknown sessions on every session endpoint and on the preview origin', async () => {
    const id = '11111111-1111-4111-8111-111111111111';
    expect((await fetch(`${system.baseUrl}/v1/sessions/${id}`)).status).toBe(404);
    expect((await fetch(`${system.baseUrl}/v1/sessions/${id}/events`)).status).toBe(404);
    const preview = await fetch(system.previewUrlOf(id));
    expect(preview.status).toBe(404);
    expect(await preview.json()).toEqual({ error: 'Session not found', routeId: id });
    const notARoute = await fetch(`${system.baseUrl.replace('127.0.0.1', 'nope.localhost')}/`);
    expect(notARoute.status).toBe(404);
    expect(await notARoute.json()).toEqual({ error: 'Session not found' });
    const badId = await fetch(`${system.baseUrl}/v1/sessions/nope`);
    expect(badId.status).toBe(400);
    expect((await badId.json()).field).toBe('id');
  });
});
