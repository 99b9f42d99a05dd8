import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { ForbiddenException, HttpException } from '@nestjs/common';
import { createMachineToken, createRoutesToken, type Config, type MachineClaims, type SessionStatus } from '@velocity/contracts';
import { createRedis, stopProcess } from '@velocity/ops';
import { PostgresSessionStore, type PreviewSession, type SessionStore } from '@velocity/session-store';
import { testConfig, startTestApi } from '@velocity/testing';
import { freePort } from '@velocity/runtime';
import { liveSessionOf, MachineAccess } from './machine-access';

/**
 * A machine token opens its own session's endpoints and project, and only while
 * that session is live; `GET /v1/routes/:routeId` needs a routes token (no
 * session's token opens it) and names the machine only. On a real api process, Postgres and Redis: what an attacker
 * holding a machine's token tries.
 */
describe('machine tokens, over the real api', () => {
  let config: Config;
  let api: ChildProcess;
  let base: string;
  let store: PostgresSessionStore;

  beforeAll(async () => {
    config = testConfig({ API_PORT: await freePort() });
    ({ child: api, base } = await startTestApi(config));
    store = new PostgresSessionStore(config.DATABASE_URL, { max: 2 });
  }, 40_000);

  afterAll(async () => {
    if (api) await stopProcess(api);
    await store?.close();
    if (!config) return;
    const redis = createRedis(config.REDIS_URL);
    const keys = await redis.keys(`${config.QUEUE_PREFIX}:*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });

  interface Answer {
    status: number;
    body: Record<string, unknown>;
  }

  const send = async (method: string, path: string, token?: string, body?: unknown): Promise<Answer> => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const files = (sessionId: string, token: string) => send('GET', `/v1/machines/${sessionId}/files`, token);
  const activity = (sessionId: string, token: string) => send('POST', `/v1/machines/${sessionId}/activity`, token, { lastActivityAt: new Date().toISOString() });
  const route = (routeId: string, token?: string) => send('GET', `/v1/routes/${routeId}`, token);
  /** The stream's status; an open stream (200) is closed at once, answering its content type. */
  const fileChanges = async (sessionId: string, token: string): Promise<Answer> => {
    const controller = new AbortController();
    const res = await fetch(`${base}/v1/machines/${sessionId}/file-changes`, { headers: { authorization: `Bearer ${token}` }, signal: controller.signal });
    if (res.status !== 200) return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    controller.abort();
    return { status: 200, body: { contentType: res.headers.get('content-type') } };
  };

  /** A project (via the api) holding one file, `<name>.txt` with `secret of <name>`. */
  async function project(name: string): Promise<string> {
    const created = await send('POST', '/v1/projects', undefined, { name, templateType: 'react' });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    expect((await send('PUT', `/v1/projects/${id}/files/${name}.txt`, undefined, { content: `secret of ${name}` })).status).toBe(201);
    return id;
  }

  /** A session of `projectId` moved to `status` (through the states the provisioner uses), and its machine's token. */
  async function session(projectId: string, status: SessionStatus) {
    const id = randomUUID();
    const machineId = `m-${id}`;
    const steps: [SessionStatus, Parameters<SessionStore['transition']>[2]][] = [
      ['starting', { containerId: machineId, containerUrl: 'http://127.0.0.1:9', routeId: id }],
      ['active', { previewUrl: `${base}/p/${id}/`, ttlSeconds: 600 }],
      ['ending', {}],
      ['ended', { ended: true }],
    ];
    await store.createSession({ id, projectId, tier: 'free', resourceLimits: { cpus: 1, memoryMb: 512 }, status: 'creating' });
    if (status === 'error') await store.transition(id, 'error', { errorMessage: 'machine failed', errorStep: 'create-machine' });
    for (const [to, patch] of steps.slice(0, steps.findIndex(([s]) => s === status) + 1)) await store.transition(id, to, patch);
    expect((await store.getSession(id))?.status).toBe(status);
    return { id, projectId, machineId, token: createMachineToken({ sessionId: id, projectId }, config.MACHINE_TOKEN_SECRET, 600) };
  }
  const end = async (id: string) => {
    await store.transition(id, 'ending');
    await store.transition(id, 'ended', { ended: true });
  };

  it('a live session\'s token keeps working: its files (its project\'s only), file changes, activity, and route lookups answered { routeId, machineId } only', async () => {
    const [a, b] = [await session(await project('alpha'), 'active'), await session(await project('beta'), 'active')];

    const listed = await files(a.id, a.token);
    expect(listed.status).toBe(200);
    expect(listed.body.files).toEqual(expect.arrayContaining([{ path: 'alpha.txt', content: 'secret of alpha' }]));
    expect(JSON.stringify(listed.body)).not.toContain('secret of beta');
    expect(await fileChanges(a.id, a.token)).toEqual({ status: 200, body: { contentType: expect.stringMatching(/^text\/event-stream/) } });
    expect(await activity(a.id, a.token)).toMatchObject({ status: 200, body: { sessionId: a.id } });

    // Its own route and another session's (Fly replays requests for any session), with a routes token: the machine, never the session behind it.
    const routes = createRoutesToken(a.id, config.MACHINE_TOKEN_SECRET, 600);
    expect(await route(a.id, routes)).toEqual({ status: 200, body: { routeId: a.id, machineId: a.machineId } });
    expect(await route(b.id, routes)).toEqual({ status: 200, body: { routeId: b.id, machineId: b.machineId } });
    // A session's machine token opens its own session's endpoints, not the route map.
    expect(await route(b.id, a.token)).toMatchObject({ status: 401, body: { field: 'authorization', message: expect.stringMatching(/routes token/) } });
  });

  it('a session still being provisioned is live: a claimed machine reads its files; activity waits for active (409)', async () => {
    const starting = await session(await project('gamma'), 'creating');
    expect((await files(starting.id, starting.token)).status).toBe(200);
    expect(await activity(starting.id, starting.token)).toMatchObject({ status: 409, body: { field: 'sessionId', status: 'creating' } });
  });

  it("a token of project A's live session gets 403 on session B's endpoints, and never reads project B's files", async () => {
    const [a, b] = [await session(await project('delta'), 'active'), await session(await project('epsilon'), 'active')];
    const forbidden = { status: 403, body: { statusCode: 403, field: 'authorization' } };
    for (const answer of [await files(b.id, a.token), await fileChanges(b.id, a.token), await activity(b.id, a.token)]) {
      expect(answer).toMatchObject(forbidden);
      expect(JSON.stringify(answer.body)).not.toContain('secret of epsilon');
    }

    // Claims naming A's session with B's project: refused, whatever the endpoint.
    const crossed = createMachineToken({ sessionId: a.id, projectId: b.projectId }, config.MACHINE_TOKEN_SECRET, 600);
    const anotherProject = { status: 403, body: { statusCode: 403, field: 'authorization', message: expect.stringMatching(/another project/) } };
    for (const answer of [await files(a.id, crossed), await fileChanges(a.id, crossed), await activity(a.id, crossed)]) {
      expect(answer).toMatchObject(anotherProject);
      expect(JSON.stringify(answer.body)).not.toMatch(/secret of|machineId/);
    }
  });

  it.each(['ending', 'ended', 'error'] as const)('a token whose session is %s gets 410 from files, file changes and activity', async (status) => {
    const other = await session(await project(`live-${status}`), 'active');
    const gone = await session(await project(`gone-${status}`), status === 'error' ? 'error' : 'active');
    if (status !== 'error') {
      // It worked while the session was live.
      expect((await files(gone.id, gone.token)).status).toBe(200);
      await store.transition(gone.id, 'ending');
      if (status === 'ended') await store.transition(gone.id, 'ended', { ended: true });
    }

    const ended = { status: 410, body: { statusCode: 410, error: 'Gone', field: 'sessionId', sessionId: gone.id, status, message: expect.stringMatching(/has ended/) } };
    expect(await files(gone.id, gone.token)).toMatchObject(ended);
    expect(await fileChanges(gone.id, gone.token)).toMatchObject(ended);
    expect(await activity(gone.id, gone.token)).toMatchObject(ended);
    // A live session's route, asked with the dead token: refused (it is no routes token).
    const refused = await route(other.id, gone.token);
    expect(refused).toMatchObject({ status: 401, body: { field: 'authorization' } });
    expect(refused.body).not.toHaveProperty('machineId');
  });

  it("routes: an ended session's route id is gone (410) and its session id is not told; unknown ids 404; no, forged or malformed input refused", async () => {
    const asker = await session(await project('zeta'), 'active');
    const ended = await session(await project('eta'), 'active');
    await end(ended.id);
    // A pooled machine's token: its own route id is no session's.
    const routes = createRoutesToken(randomUUID(), config.MACHINE_TOKEN_SECRET, 600);

    const gone = await route(ended.id, routes);
    expect(gone).toMatchObject({ status: 410, body: { statusCode: 410, field: 'routeId', routeId: ended.id } });
    expect(gone.body).not.toHaveProperty('sessionId');
    expect(gone.body).not.toHaveProperty('machineId');
    expect(await route(asker.id, routes)).toMatchObject({ status: 200, body: { routeId: asker.id } });
    expect(await route(randomUUID(), routes)).toMatchObject({ status: 404, body: { field: 'routeId' } });
    expect(await route('not-a-uuid', routes)).toMatchObject({ status: 400, body: { field: 'routeId' } });
    expect(await route(asker.id)).toMatchObject({ status: 401, body: { field: 'authorization' } });
    expect(await route(asker.id, createRoutesToken(asker.id, 'not-the-machine-token-secret', 600))).toMatchObject({ status: 401, body: { field: 'authorization' } });
    expect(await route(asker.id, createRoutesToken(asker.id, config.MACHINE_TOKEN_SECRET, -1))).toMatchObject({ status: 401, body: { field: 'authorization' } });
  });

  it('a token of a session that does not exist: 404 naming the session, on every machine endpoint', async () => {
    const projectId = await project('theta');
    const ghost = randomUUID();
    const token = createMachineToken({ sessionId: ghost, projectId }, config.MACHINE_TOKEN_SECRET, 600);
    for (const answer of [await files(ghost, token), await fileChanges(ghost, token), await activity(ghost, token)]) {
      expect(answer).toMatchObject({ status: 404, body: { field: 'sessionId', sessionId: ghost } });
    }
  });
});

/** The check on its own: one row read a call, and which answer each row gets. */
describe('MachineAccess', () => {
  const claims: MachineClaims = { sessionId: randomUUID(), projectId: randomUUID(), exp: Math.floor(Date.now() / 1000) + 60 };
  const row = (status: SessionStatus, projectId = claims.projectId) => ({ id: claims.sessionId, projectId, status }) as PreviewSession;
  const statusOf = (session: PreviewSession | null, field: 'sessionId' | 'authorization' = 'sessionId') => {
    try {
      liveSessionOf(session, claims, field);
      return 200;
    } catch (err) {
      return (err as HttpException).getStatus();
    }
  };

  it('answers the row of a live session of the token\'s project; 404 without one, 403 for another project, 410 once it has ended', () => {
    for (const status of ['queued', 'creating', 'starting', 'active'] as const) expect({ status, answer: statusOf(row(status)) }).toEqual({ status, answer: 200 });
    for (const status of ['ending', 'ended', 'error'] as const) expect({ status, answer: statusOf(row(status)) }).toEqual({ status, answer: 410 });
    expect(statusOf(null)).toBe(404);
    expect(statusOf(row('active', randomUUID()))).toBe(403);
    expect(() => liveSessionOf(row('ended'), claims, 'authorization')).toThrow(/token's session/);
  });

  it('reads the one row of the token\'s session per check', async () => {
    const reads: string[] = [];
    const store = { getSession: async (id: string) => (reads.push(id), row('active')) } as unknown as SessionStore;
    const access = new MachineAccess({ MACHINE_TOKEN_SECRET: 'machine-token-secret-for-tests' } as Config, store);
    const token = createMachineToken(claims, 'machine-token-secret-for-tests', 60);
    expect((await access.open(`Bearer ${token}`, claims.sessionId)).id).toBe(claims.sessionId);
    expect(reads).toEqual([claims.sessionId]);
    await expect(access.open(`Bearer ${token}`, randomUUID())).rejects.toBeInstanceOf(ForbiddenException);
    expect(reads).toHaveLength(1);
  });
});
