import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMachineToken, sessionEventSchema, type Diagnostic, type SessionEvent } from '@velocity/contracts';
import { createRedis } from '@velocity/ops';
import { openHttp, readSse, requestText, unixSocketUrl } from '@velocity/runtime';
import { createHarness, until, type Harness } from '../../cleanup/test/harness';

// A real api process: more than Jest's default 5 s.
jest.setTimeout(30_000);

/** A session's events as a client follows them, kept as they arrive; `closed` once the api ends the stream. */
interface Follower {
  events: SessionEvent[];
  closed: boolean;
  stop(): void;
}

/**
 * POST /v1/machines/:sessionId/diagnostics on a real api process (over its port
 * and over the machines' socket): a report becomes a `diagnostics` event on the
 * session's stream, which stays open after `ready`, and the session's `build`;
 * bad bodies are 400s naming the field, other sessions' tokens 403, ended
 * sessions 410. The stream closes at `ended`, or when the session's end is
 * announced and its row says so.
 */
describe('machine diagnostics → session events and GET /v1/sessions/:id', () => {
  let h: Harness;
  let base: string;
  let socketDir: string;
  const followers: Follower[] = [];

  beforeAll(async () => {
    socketDir = mkdtempSync(join(tmpdir(), 'vp-diag-'));
    h = await createHarness({ MACHINE_API_SOCKET: join(socketDir, 'api.sock') });
    base = await h.startApi();
  });

  afterAll(async () => {
    for (const follower of followers) follower.stop();
    await h?.close();
    rmSync(socketDir, { recursive: true, force: true });
  });

  const tokenFor = (session: { id: string; projectId: string }) => createMachineToken({ sessionId: session.id, projectId: session.projectId }, h.config.MACHINE_TOKEN_SECRET, 600);
  const report = async (sessionId: string, body: unknown, token?: string, via = base) => {
    const res = await requestText(`${via}/v1/machines/${sessionId}/diagnostics`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    return { status: res.status, body: JSON.parse(res.body) };
  };
  const getSession = async (id: string) => (await fetch(`${base}/v1/sessions/${id}`)).json();
  const follow = async (sessionId: string): Promise<Follower> => {
    const controller = new AbortController();
    const res = await openHttp(`${base}/v1/sessions/${sessionId}/events`, { signal: controller.signal });
    const follower: Follower = { events: [], closed: false, stop: () => controller.abort() };
    followers.push(follower);
    void (async () => {
      try {
        for await (const frame of readSse(res)) follower.events.push(sessionEventSchema.parse(JSON.parse(frame.data)));
        follower.closed = true;
      } catch {
        // stopped by the test
      }
    })();
    return follower;
  };
  /** An active session whose provisioning stored `ready` (clean), as the provisioner does. */
  const readySession = async () => {
    const { session } = await h.activeSession({ ttlSeconds: 600, expiryJob: false, machine: false });
    await h.deps.events.append({ type: 'ready', sessionId: session.id, at: Date.now(), previewUrl: `http://${session.id}.localhost:3000/`, expiresAt: session.expiresAt!, diagnostics: [] });
    return session;
  };
  const broken: Diagnostic = { kind: 'build', file: 'src/App.jsx', line: 8, column: 24, message: 'Expected `}` but found `Identifier`', plugin: 'vite:oxc' };

  it('a report is a diagnostics event on the open stream (after ready) and the session\'s build; the same report again adds nothing', async () => {
    const session = await readySession();
    const token = tokenFor(session);
    const follower = await follow(session.id);
    await until(async () => follower.events.some((e) => e.type === 'ready'), 'ready on the stream');
    expect((await getSession(session.id)).build).toEqual({ state: 'ok', diagnostics: [], at: expect.any(Number) });

    const sent = { state: 'errors', diagnostics: [broken], at: Date.now() };
    expect(await report(session.id, sent, token)).toEqual({ status: 200, body: { sessionId: session.id, state: 'errors', stored: true } });
    const event = await until(async () => follower.events.find((e) => e.type === 'diagnostics'), 'the diagnostics event');
    expect(event).toMatchObject({ type: 'diagnostics', sessionId: session.id, state: 'errors', diagnostics: [broken] });
    expect((await getSession(session.id)).build).toEqual({ state: 'errors', diagnostics: [broken], at: event.at });

    expect((await report(session.id, { ...sent, at: Date.now() }, token)).body.stored).toBe(false);
    // Over the machines' socket too (sandboxed machines have no network).
    const fixed = await report(session.id, { state: 'ok', diagnostics: [], at: Date.now() }, token, unixSocketUrl(join(socketDir, 'api.sock')));
    expect(fixed).toEqual({ status: 200, body: { sessionId: session.id, state: 'ok', stored: true } });
    await until(async () => follower.events.filter((e) => e.type === 'diagnostics').length === 2, 'the ok event');
    expect(follower.events.map((e) => (e.type === 'diagnostics' ? `diagnostics:${e.state}` : e.type))).toEqual(['ready', 'diagnostics:errors', 'diagnostics:ok']);
    expect((await getSession(session.id)).build).toMatchObject({ state: 'ok', diagnostics: [] });
    expect(follower.closed).toBe(false);

    // The session's end closes the stream, after its events.
    await h.deps.store.transition(session.id, 'ending');
    await h.deps.events.append({ type: 'ending', sessionId: session.id, at: Date.now(), reason: 'stopped' });
    await h.deps.store.transition(session.id, 'ended', { ended: true });
    await h.deps.events.append({ type: 'ended', sessionId: session.id, at: Date.now(), reason: 'stopped' });
    await until(async () => follower.closed, 'the stream to close at ended');
    expect(follower.events.slice(-2).map((e) => e.type)).toEqual(['ending', 'ended']);
  });

  it('refuses a bad body with 400 naming the field, another session\'s token with 403, an ended session with 410', async () => {
    const session = await readySession();
    const token = tokenFor(session);
    const at = Date.now();
    const cases: [unknown, string][] = [
      [{ state: 'errors', diagnostics: [], at }, 'state'],
      [{ state: 'ok', diagnostics: [broken], at }, 'state'],
      [{ state: 'errors', diagnostics: [{ ...broken, file: '/tmp/project/src/App.jsx' }], at }, 'diagnostics.0.file'],
      [{ state: 'errors', diagnostics: [{ ...broken, file: '../secrets.txt' }], at }, 'diagnostics.0.file'],
      [{ state: 'errors', diagnostics: [{ ...broken, kind: 'lint' }], at }, 'diagnostics.0.kind'],
      [{ state: 'errors', diagnostics: [{ ...broken, line: 0 }], at }, 'diagnostics.0.line'],
      [{ state: 'errors', diagnostics: [{ ...broken, message: 'x'.repeat(1001) }], at }, 'diagnostics.0.message'],
      [{ state: 'errors', diagnostics: Array.from({ length: 21 }, () => broken), at }, 'diagnostics'],
      [{ state: 'ok', diagnostics: [], at, extra: 1 }, 'extra'],
      [{ state: 'ok', diagnostics: [] }, 'at'],
      [[], 'body'],
    ];
    for (const [body, field] of cases) {
      const answer = await report(session.id, body, token);
      expect({ field, answer }).toMatchObject({ field, answer: { status: 400, body: { statusCode: 400, field } } });
    }
    expect((await report(session.id, { state: 'ok', diagnostics: [], at }, undefined)).status).toBe(401);
    const other = await readySession();
    expect(await report(other.id, { state: 'ok', diagnostics: [], at }, token)).toMatchObject({ status: 403, body: { field: 'authorization' } });
    expect((await h.deps.events.read(session.id)).map((e) => e.event.type)).toEqual(['ready']);

    await h.deps.store.transition(session.id, 'ending');
    expect(await report(session.id, { state: 'errors', diagnostics: [broken], at }, token)).toMatchObject({ status: 410, body: { field: 'sessionId' } });
  });

  it('a stream whose session is announced gone closes with the end its row says, when no event says it', async () => {
    const session = await readySession();
    const follower = await follow(session.id);
    await until(async () => follower.events.some((e) => e.type === 'ready'), 'ready on the stream');
    // The row ends without its events (they were lost): only the announcement reaches the api.
    await h.deps.store.transition(session.id, 'ending');
    await h.deps.store.transition(session.id, 'ended', { ended: true });
    const publisher = createRedis(h.config.REDIS_URL);
    try {
      await publisher.publish(h.deps.events.goneChannel, session.id);
    } finally {
      publisher.disconnect();
    }
    await until(async () => follower.closed, 'the stream to close');
    expect(follower.events.map((e) => e.type)).toEqual(['ready', 'ended']);
  });
});
