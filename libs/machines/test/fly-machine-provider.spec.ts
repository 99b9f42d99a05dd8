import { randomUUID } from 'node:crypto';
import { FlyMachineProvider, type FlyMachineProviderOptions } from '../src/fly-machine-provider';
import { PermanentError, TimeoutError, isRetryable, sleep, resourceLimitsOf } from '@velocity/contracts';
import type { MachineSpec } from '../src/machine-provider';
import { FlyApiDouble, machineProviderContract } from '@velocity/testing';

const TOKEN = 'fly-test-token';
const APP = 'vp-test-previews';
const IMAGE = 'registry.fly.io/vp-preview-container:test';
const MACHINES = `/apps/${APP}/machines`;

/** The double starts a machine as slowly as its env asks (the container would honour START_DELAY_MS). */
const startDelayFromEnv = (config: Record<string, any>) => Number(config.env?.START_DELAY_MS ?? 50);
/** A second of a wait's `timeout`, as the doubles of these specs count it: a timed-out wait costs a tenth of Fly's. */
const WAIT_SECOND_MS = 100;

function specOf(sessionId: string, tier: 'free' | 'pro' = 'free'): MachineSpec {
  return {
    sessionId,
    projectId: randomUUID(),
    templateType: 'react',
    resourceLimits: resourceLimitsOf(tier),
    env: { SESSION_ID: sessionId, BASE_PATH: `/p/${sessionId}/`, MACHINE_TOKEN: 'machine-token' },
  };
}

function providerFor(double: FlyApiDouble, overrides: Partial<FlyMachineProviderOptions> = {}): FlyMachineProvider {
  return new FlyMachineProvider({
    apiUrl: double.url,
    token: TOKEN,
    appName: APP,
    image: IMAGE,
    region: 'ams',
    retryBaseDelayMs: 10,
    ...overrides,
  });
}

async function settle<T>(promise: Promise<T>): Promise<any> {
  return promise.then(
    () => null,
    (error: unknown) => error,
  );
}

machineProviderContract('FlyMachineProvider (against the Fly API double)', async () => {
  const double = await FlyApiDouble.start({ token: TOKEN, apps: [APP], startDelayMs: startDelayFromEnv });
  const provider = providerFor(double);
  return {
    provider,
    spec: (sessionId) => specOf(sessionId),
    teardown: async () => {
      for (const machine of await provider.list()) await provider.destroy(machine.id);
      await provider.close();
      await double.close();
    },
  };
});

describe('FlyMachineProvider', () => {
  let double: FlyApiDouble;

  beforeEach(async () => {
    double = await FlyApiDouble.start({ token: TOKEN, apps: [APP], startDelayMs: startDelayFromEnv, waitSecondMs: WAIT_SECOND_MS });
  });

  afterEach(async () => {
    await double.close();
  });

  const sessionMachines = (sessionId: string) =>
    double.machines(APP).filter((m) => m.config.metadata?.session_id === sessionId && m.state !== 'destroyed');

  it('looks the session up by metadata, then creates the machine Fly documents', async () => {
    const provider = providerFor(double);
    const sessionId = randomUUID();
    const spec = specOf(sessionId, 'pro');
    const machine = await provider.create(spec);

    const [lookup] = double.requestsTo('GET', MACHINES);
    expect(lookup.query.get('metadata.session_id')).toBe(sessionId);
    const posts = double.requestsTo('POST', MACHINES);
    expect(posts).toHaveLength(1);
    expect(posts[0].headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(posts[0].headers['content-type']).toContain('application/json');
    expect(posts[0].body).toEqual({
      name: `vp-${sessionId}`,
      region: 'ams',
      config: {
        image: IMAGE,
        env: { ...spec.env, PORT: '8080', HOST: '::', WORK_DIR: '/app/work' },
        guest: { cpu_kind: 'shared', cpus: 2, memory_mb: 2048 },
        metadata: { session_id: sessionId, project_id: spec.projectId },
        services: [
          {
            internal_port: 8080,
            protocol: 'tcp',
            ports: [
              { port: 443, handlers: ['tls', 'http'] },
              { port: 80, handlers: ['http'] },
            ],
            checks: [{ type: 'http', protocol: 'http', method: 'GET', path: '/serving', interval: '2s', timeout: '2s', grace_period: '1s' }],
          },
        ],
        checks: { serving: { type: 'http', port: 8080, method: 'GET', path: '/serving', interval: '2s', timeout: '2s', grace_period: '1s' } },
        restart: { policy: 'no' },
        auto_destroy: true,
      },
    });

    const [stored] = sessionMachines(sessionId);
    expect(machine).toEqual({ id: stored.id, sessionId, state: 'starting', url: `http://[${stored.private_ip}]:8080` });
    expect(machine.id).toMatch(/^[0-9a-f]{14}$/);
    expect(stored.region).toBe('ams');
  });

  it('uses the free tier limits for a free session', async () => {
    await providerFor(double).create(specOf(randomUUID(), 'free'));
    expect(double.requestsTo('POST', MACHINES)[0].body.config.guest).toEqual({ cpu_kind: 'shared', cpus: 1, memory_mb: 512 });
  });

  it('retries a 429 after the Retry-After it was given', async () => {
    const provider = providerFor(double);
    double.failNext(1, 429, { error: 'rate limit exceeded' }, { method: 'GET', headers: { 'retry-after': '1' } });
    const started = Date.now();
    await expect(provider.list()).resolves.toEqual([]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect(double.requestsTo('GET', MACHINES).map((r) => r.status)).toEqual([429, 200]);
  });

  it('retries 5xx with backoff when no Retry-After is given', async () => {
    const provider = providerFor(double, { retries: 3 });
    double.failNext(2, 500, { error: 'internal error' });
    await expect(provider.list()).resolves.toEqual([]);
    expect(double.requestsTo('GET', MACHINES).map((r) => r.status)).toEqual([500, 500, 200]);
  });

  it('after a create answered 503 that made the machine anyway, finds that machine instead of creating another', async () => {
    const provider = providerFor(double, { retries: 3 });
    const sessionId = randomUUID();
    double.failNext(1, 503, { error: 'upstream unavailable' }, { method: 'POST', path: /^\/apps\/[^/]+\/machines$/, afterHandling: true });
    const machine = await provider.create(specOf(sessionId));
    expect(double.requestsTo('POST', MACHINES).map((r) => r.status)).toEqual([503]);
    expect(sessionMachines(sessionId).map((m) => m.id)).toEqual([machine.id]);
    await expect(provider.waitStarted(machine, 10_000)).resolves.toMatchObject({ id: machine.id, state: 'started' });
  });

  it('asks its rate limiter before every call, the retried ones too', async () => {
    const asked: string[] = [];
    const provider = providerFor(double, { retries: 3, limiter: { acquire: async (method, path) => void asked.push(`${method} ${path}`) } });
    double.failNext(1, 500, { error: 'internal error' }, { method: 'GET' });
    await provider.list();
    expect(asked).toEqual([`GET ${MACHINES}`, `GET ${MACHINES}`]);
    expect(double.requests.map((r) => `${r.method} ${r.path}`)).toEqual(asked);
  });

  it('retries a 408 of a call that is not a wait (the API timed the request out)', async () => {
    const provider = providerFor(double, { retries: 3 });
    double.failNext(1, 408, { error: 'request timed out' }, { method: 'GET' });
    await expect(provider.list()).resolves.toEqual([]);
    expect(double.requestsTo('GET', MACHINES).map((r) => r.status)).toEqual([408, 200]);
  });

  it('gives up on 503 after its retries with an error naming method, path and status', async () => {
    const provider = providerFor(double, { retries: 2 });
    double.failNext(3, 503, { error: 'upstream unavailable' });
    const error = await settle(provider.list());
    expect(error).toBeInstanceOf(Error);
    expect(error).not.toBeInstanceOf(PermanentError);
    expect(isRetryable(error)).toBe(true);
    expect(error.message).toContain(`GET ${MACHINES}`);
    expect(error.message).toContain('503');
    expect(error.message).toContain('upstream unavailable');
    expect(double.requests).toHaveLength(3);
  });

  it('a wrong token is a PermanentError with Fly\'s message, not retried', async () => {
    const provider = providerFor(double, { token: 'not-the-token' });
    const error = await settle(provider.create(specOf(randomUUID())));
    expect(error).toBeInstanceOf(PermanentError);
    expect(error.message).toContain('401');
    expect(error.message).toContain('You must be authenticated');
    expect(double.requests).toHaveLength(1);
  });

  it('an unknown app is a PermanentError', async () => {
    const error = await settle(providerFor(double, { appName: 'no-such-app' }).list());
    expect(error).toBeInstanceOf(PermanentError);
    expect(error.message).toContain('404');
  });

  it('insufficient_capacity is transient: retried, and retryable when it persists', async () => {
    const capacity = { error: 'insufficient resources available to fulfill request', status: 'insufficient_capacity' };
    double.failNext(1, 422, capacity, { method: 'POST' });
    const machine = await providerFor(double).create(specOf(randomUUID()));
    expect(machine.id).toMatch(/^[0-9a-f]{14}$/);
    expect(double.requestsTo('POST', MACHINES).map((r) => r.status)).toEqual([422, 200]);

    double.failNext(2, 422, capacity, { method: 'POST' });
    const error = await settle(providerFor(double, { retries: 1 }).create(specOf(randomUUID())));
    expect(error).not.toBeInstanceOf(PermanentError);
    expect(isRetryable(error)).toBe(true);
    expect(error.message).toContain('insufficient_capacity');
    expect(error.message).toContain('422');
  });

  it('any other 422 is a PermanentError', async () => {
    double.failNext(1, 422, { error: 'invalid config: memory_mb too small' }, { method: 'POST' });
    const error = await settle(providerFor(double).create(specOf(randomUUID())));
    expect(error).toBeInstanceOf(PermanentError);
    expect(error.message).toContain('memory_mb too small');
  });

  it('a create that outlives its timeout is looked up before it is tried again, and ends with the one machine it made', async () => {
    const provider = providerFor(double, { requestTimeoutMs: 200, retries: 5 });
    const sessionId = randomUUID();
    double.hangCreateMs = 400; // Fly makes the machine, after the client has given up on the answer
    const machine = await provider.create(specOf(sessionId));
    expect(sessionMachines(sessionId).map((m) => m.id)).toEqual([machine.id]);
    // Every try after the first began with a look-up of the session's machines.
    const posts = double.requestsTo('POST', MACHINES).length;
    expect(posts).toBeGreaterThanOrEqual(1);
    expect(double.requestsTo('GET', MACHINES).length).toBeGreaterThanOrEqual(posts);
  });

  it('a create that keeps outliving its timeout fails with a TimeoutError naming the request', async () => {
    const provider = providerFor(double, { requestTimeoutMs: 100, retries: 0 });
    double.hangCreateMs = 400;
    const error = await settle(provider.create(specOf(randomUUID())));
    expect(error).toBeInstanceOf(TimeoutError);
    expect(error.message).toContain(`POST ${MACHINES}`);
    double.hangCreateMs = 0;
  });

  it('two processes creating for one session at once end with one machine (the name conflict)', async () => {
    const sessionId = randomUUID();
    double.hangCreateMs = 200; // both POSTs are in flight together
    const [a, b] = await Promise.all([providerFor(double).create(specOf(sessionId)), providerFor(double).create(specOf(sessionId))]);
    expect(a.id).toBe(b.id);
    expect(double.requestsTo('POST', MACHINES).map((r) => r.status).sort()).toEqual([200, 409]);
    expect(sessionMachines(sessionId)).toHaveLength(1);
  });

  it.each([408, 400] as const)('waitStarted keeps waiting while wait calls time out with %i', async (status) => {
    double.waitTimeoutStatus = status;
    const provider = providerFor(double, { maxWaitSeconds: 1 });
    const spec = specOf(randomUUID());
    // Several of the double's wait seconds: waits time out before the machine starts, however slow this machine is.
    const machine = await provider.create({ ...spec, env: { ...spec.env, START_DELAY_MS: String(5 * WAIT_SECOND_MS) } });
    const started = await provider.waitStarted(machine, 15_000);
    expect(started).toMatchObject({ id: machine.id, state: 'started' });
    // The last wait may have timed out too, with the machine started just after it (the status read then sees it).
    const waits = double.requestsTo('GET', `${MACHINES}/${machine.id}/wait`);
    expect(waits.map((r) => r.status)).toContain(status);
    expect(waits.every((r) => r.query.get('state') === 'started' && r.query.get('timeout') === '1')).toBe(true);
  });

  it('waitStarted returns only once the health check passes', async () => {
    double.healthyDelayMs = 300;
    const provider = providerFor(double);
    const machine = await provider.create(specOf(randomUUID()));
    await provider.waitStarted(machine, 10_000);
    // Read the moment it returns: had it not waited for the check, the check would still be critical.
    const stored = double.machines(APP).find((m) => m.id === machine.id);
    expect(stored?.checks).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'serving', status: 'passing' })]));
    expect(stored?.checks?.every((check) => check.status === 'passing')).toBe(true);
  });

  it.each(['failed', 'launch_failed'] as const)('waitStarted fails fast for a machine that is %s, and create replaces it', async (state) => {
    const provider = providerFor(double);
    const sessionId = randomUUID();
    const machine = await provider.create(specOf(sessionId));
    double.setState(APP, machine.id, state);
    const t0 = Date.now();
    const error = await settle(provider.waitStarted(machine, 10_000));
    expect(error).toBeInstanceOf(Error);
    expect(error).not.toBeInstanceOf(TimeoutError);
    expect(error.message).toContain(machine.id);
    expect(error.message).toContain(state);
    expect(Date.now() - t0).toBeLessThan(3000);

    const replacement = await provider.create(specOf(sessionId));
    expect(replacement.id).not.toBe(machine.id);
    expect(double.machines(APP).find((m) => m.id === machine.id)?.state).toBe('destroyed');
    expect(sessionMachines(sessionId).map((m) => m.id)).toEqual([replacement.id]);
    await expect(provider.waitStarted(replacement, 10_000)).resolves.toMatchObject({ state: 'started' });
  });

  it('destroy forces, and stop stops (auto_destroy then removes the machine)', async () => {
    const provider = providerFor(double);
    const a = await provider.create(specOf(randomUUID()));
    const b = await provider.create(specOf(randomUUID()));
    await provider.waitStarted(a, 10_000);
    await provider.waitStarted(b, 10_000);

    await provider.destroy(a.id);
    expect(double.requestsTo('DELETE', `${MACHINES}/${a.id}`)[0].query.get('force')).toBe('true');

    await provider.stop(b.id);
    for (let i = 0; i < 50 && (await provider.get(b.id)); i++) await sleep(20);
    expect(await provider.get(b.id)).toBeNull();
    expect(double.machines(APP).find((m) => m.id === b.id)?.state).toBe('destroyed');
    await expect(provider.stop(b.id)).resolves.toBeUndefined();
  });

  it('machines without a session_id are not the provider\'s: get is null, list leaves them out', async () => {
    const res = await fetch(`${double.url}${MACHINES}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ config: { image: 'nginx' } }),
    });
    const foreign = (await res.json()) as { id: string };
    const provider = providerFor(double);
    const ours = await provider.create(specOf(randomUUID()));
    expect(await provider.get(foreign.id)).toBeNull();
    expect((await provider.list()).map((m) => m.id)).toEqual([ours.id]);
  });

  it('falls back to the .internal name when a machine has no private IP', async () => {
    const provider = providerFor(double);
    const machine = await provider.create(specOf(randomUUID()));
    double.machines(APP).find((m) => m.id === machine.id)!.private_ip = '';
    expect((await provider.get(machine.id))?.url).toBe(`http://${machine.id}.vm.${APP}.internal:8080`);
  });

  it('an aborted signal stops create and waitStarted', async () => {
    const provider = providerFor(double);
    const controller = new AbortController();
    controller.abort(new Error('job cancelled'));
    await expect(provider.create(specOf(randomUUID()), controller.signal)).rejects.toThrow('job cancelled');
    double.startDelayMs = 5000;
    const machine = await provider.create(specOf(randomUUID()));
    const slow = new AbortController();
    setTimeout(() => slow.abort(new Error('deadline passed')), 100);
    await expect(provider.waitStarted(machine, 10_000, slow.signal)).rejects.toThrow('deadline passed');
  });
});

describe('Fly API double (the published API it models)', () => {
  let double: FlyApiDouble;

  beforeEach(async () => {
    double = await FlyApiDouble.start({ token: TOKEN, apps: [APP], startDelayMs: 30, waitSecondMs: WAIT_SECOND_MS });
  });

  afterEach(async () => {
    await double.close();
  });

  async function api(method: string, path: string, body?: unknown, token = TOKEN): Promise<{ status: number; body: any }> {
    const res = await fetch(`${double.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  }

  const createMachine = (extra: Record<string, unknown> = {}, config: Record<string, unknown> = {}) =>
    api('POST', MACHINES, { config: { image: 'nginx:1.27', ...config }, ...extra });

  async function until(path: string, state: string): Promise<any> {
    for (let i = 0; i < 100; i++) {
      const { body } = await api('GET', path);
      if (body.state === state) return body;
      await sleep(10);
    }
    throw new Error(`${path} never reached ${state}`);
  }

  it('answers 401 without the bearer token and 404 for an unknown app, with ErrorResponse bodies', async () => {
    expect(await api('GET', MACHINES, undefined, 'wrong')).toEqual({ status: 401, body: { error: expect.any(String) } });
    expect(await api('GET', '/apps/nope/machines')).toEqual({ status: 404, body: { error: expect.stringContaining('app') } });
    expect(await api('GET', `${MACHINES}/0123456789abcd`)).toEqual({ status: 404, body: { error: 'machine not found' } });
  });

  it('create answers 200 with a Machine that goes created → starting → started', async () => {
    const { status, body } = await createMachine({ name: 'my-machine', region: 'syd' }, { env: { A: '1' }, metadata: { k: 'v' } });
    expect(status).toBe(200);
    expect(body).toMatchObject({
      id: expect.stringMatching(/^[0-9a-f]{14}$/),
      name: 'my-machine',
      state: 'created',
      region: 'syd',
      instance_id: expect.stringMatching(/^[0-9A-Z]{26}$/),
      private_ip: expect.stringMatching(/^fdaa:/),
      config: { image: 'nginx:1.27', env: { A: '1' }, metadata: { k: 'v' }, guest: { cpu_kind: 'shared', cpus: 1, memory_mb: 256 } },
      image_ref: expect.objectContaining({ repository: 'nginx', tag: '1.27' }),
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/),
      updated_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/),
      events: [expect.objectContaining({ type: 'launch', status: 'created' })],
    });
    await until(`${MACHINES}/${body.id}`, 'started');
    const generated = await createMachine();
    expect(generated.body.name).toMatch(/^[a-z]+-[a-z]+-\d{4}$/);
  });

  it('create needs config.image (400) and a free name (409)', async () => {
    expect((await api('POST', MACHINES, { config: {} })).status).toBe(400);
    expect((await createMachine({ name: 'taken' })).status).toBe(200);
    expect(await createMachine({ name: 'taken' })).toEqual({ status: 409, body: { error: expect.stringContaining('taken') } });
  });

  it('list filters by metadata.<key>, region and include_deleted', async () => {
    const a = (await createMachine({ region: 'ams' }, { metadata: { session_id: 's1' } })).body;
    const b = (await createMachine({ region: 'ord' }, { metadata: { session_id: 's2' } })).body;
    const ids = async (query: string) => (await api('GET', `${MACHINES}${query}`)).body.map((m: { id: string }) => m.id).sort();
    expect(await ids('')).toEqual([a.id, b.id].sort());
    expect(await ids('?metadata.session_id=s1')).toEqual([a.id]);
    expect(await ids('?region=ord')).toEqual([b.id]);
    expect(await ids('?metadata.session_id=none')).toEqual([]);
    expect((await api('DELETE', `${MACHINES}/${a.id}?force=true`)).body).toEqual({ ok: true });
    expect(await ids('?metadata.session_id=s1')).toEqual([]);
    expect(await ids('?metadata.session_id=s1&include_deleted=true')).toEqual([a.id]);
  });

  it('wait answers 200 {ok:true} when the state is reached, the timeout status otherwise, 400 for bad parameters', async () => {
    const machine = (await createMachine()).body;
    const wait = (query: string) => api('GET', `${MACHINES}/${machine.id}/wait${query}`);
    expect(await wait('?state=started&timeout=5')).toEqual({ status: 200, body: { ok: true } });
    expect((await wait('?state=bogus')).status).toBe(400);
    expect((await wait('?state=started&timeout=x')).status).toBe(400);
    expect(await wait('?state=stopped&timeout=1')).toEqual({ status: 400, body: { error: expect.stringContaining('instance_id') } });
    const t0 = Date.now();
    expect(await wait(`?state=stopped&timeout=1&instance_id=${machine.instance_id}`)).toEqual({
      status: 408,
      body: { error: expect.stringContaining('deadline_exceeded'), status: 'unknown' },
    });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(WAIT_SECOND_MS - 5);
    double.waitTimeoutStatus = 400;
    expect((await wait(`?state=stopped&timeout=1&instance_id=${machine.instance_id}`)).status).toBe(400);
  });

  it('destroy needs force for a running machine (412); a destroyed machine answers 404 to changes but GET shows it', async () => {
    const machine = await until(`${MACHINES}/${(await createMachine()).body.id}`, 'started');
    const path = `${MACHINES}/${machine.id}`;
    expect(await api('DELETE', path)).toEqual({ status: 412, body: { error: expect.stringContaining('failed_precondition') } });
    expect(await api('DELETE', `${path}?force=true`)).toEqual({ status: 200, body: { ok: true } });
    expect((await api('GET', path)).body.state).toBe('destroyed');
    expect((await api('DELETE', `${path}?force=true`)).status).toBe(404);
    expect((await api('POST', `${path}/stop`)).status).toBe(404);
    expect(await api('GET', `${path}/wait?state=destroyed&timeout=1`)).toEqual({ status: 200, body: { ok: true } });
    expect((await api('GET', `${path}/wait?state=started&timeout=1`)).status).toBe(400);
  });

  it('stop and start: a stopped machine without auto_destroy can start again; with auto_destroy it is destroyed', async () => {
    const kept = await until(`${MACHINES}/${(await createMachine()).body.id}`, 'started');
    expect(await api('POST', `${MACHINES}/${kept.id}/stop`, {})).toEqual({ status: 200, body: { ok: true } });
    await until(`${MACHINES}/${kept.id}`, 'stopped');
    expect(await api('POST', `${MACHINES}/${kept.id}/start`)).toEqual({ status: 200, body: { previous_state: 'stopped' } });
    await until(`${MACHINES}/${kept.id}`, 'started');

    const ephemeral = await until(`${MACHINES}/${(await createMachine({}, { auto_destroy: true })).body.id}`, 'started');
    await api('POST', `${MACHINES}/${ephemeral.id}/stop`);
    await until(`${MACHINES}/${ephemeral.id}`, 'destroyed');
  });

  it('metadata: get the map, set a key (204), delete a key (204)', async () => {
    const machine = (await createMachine({}, { metadata: { a: '1' } })).body;
    const path = `${MACHINES}/${machine.id}/metadata`;
    expect(await api('GET', path)).toEqual({ status: 200, body: { a: '1' } });
    expect(await api('POST', `${path}/b`, { value: '2' })).toEqual({ status: 204, body: null });
    expect(await api('DELETE', `${path}/a`)).toEqual({ status: 204, body: null });
    expect(await api('GET', path)).toEqual({ status: 200, body: { b: '2' } });
  });

  it('failNext answers matching requests with the injected status and headers', async () => {
    double.failNext(1, 429, { error: 'slow down' }, { method: 'POST', headers: { 'retry-after': '2' } });
    expect((await api('GET', MACHINES)).status).toBe(200);
    const res = await fetch(`${double.url}${MACHINES}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ config: { image: 'nginx' } }),
    });
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('2');
    expect(await res.json()).toEqual({ error: 'slow down' });
    expect((await createMachine()).status).toBe(200);
  });
});
