import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { createLogger } from '@velocity/runtime';
import { buildStateSchema, type BuildState } from '@velocity/contracts';
import { BuildTracker } from '../src/build-state';
import { bodyOf, createDiagnosticsReporter, diagnosticsUrlOf } from '../src/diagnostics-reporter';
import { injectRuntimeErrorsClient, RUNTIME_ERRORS_CLIENT } from '../src/runtime-errors-client';
import { createContainerServer, type ContainerServer } from '../src/server';

const logger = createLogger('diagnostics-test', 'silent');
const until = async (what: string, check: () => boolean, timeoutMs = 5000) => {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

/**
 * The machine's own diagnostics endpoints on its preview origin: the build
 * state, the page's runtime-error reports (checked, bounded, rate limited), and
 * the module loads it watches; through a real container server with a stand-in
 * for Vite behind its proxy.
 */
describe('the machine\'s diagnostics endpoints', () => {
  const routeId = randomUUID();
  const host = `${routeId}.localhost:3000`;
  let container: ContainerServer;
  let port: number;
  /** What the stand-in Vite answers for a path. */
  const viteStatus = new Map<string, number>();

  beforeAll(async () => {
    container = createContainerServer({ sessionId: routeId, routeId, logger });
    container.setDevServer({
      handle: (req, res) => {
        res.statusCode = viteStatus.get(req.url ?? '') ?? 200;
        res.end('export default 1;');
      },
      upgrade: (_req, socket) => socket.destroy(),
    });
    port = await container.listen(0, '127.0.0.1');
  });

  afterAll(async () => {
    await container?.close();
  });

  const send = (method: string, path: string, options: { host?: string; headers?: Record<string, string>; body?: string } = {}) =>
    new Promise<{ status: number; body: string; headers: Record<string, unknown> }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, method, path, headers: { host: options.host ?? host, ...options.headers } }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      });
      req.on('error', reject);
      req.end(options.body);
    });
  const report = (body: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
    send('POST', '/__velocity/runtime-errors', { headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const state = async () => buildStateSchema.parse(JSON.parse((await send('GET', '/__velocity/build-state')).body)) as BuildState;

  it('answers the build state on the preview\'s own origin only', async () => {
    const answer = await send('GET', '/__velocity/build-state');
    expect(answer.status).toBe(200);
    expect(answer.headers['cache-control']).toBe('no-store');
    expect(JSON.parse(answer.body)).toMatchObject({ state: 'ok', diagnostics: [] });
    // The provider's Host (the control side) and another preview's origin do not get it.
    expect((await send('GET', '/__velocity/build-state', { host: `127.0.0.1:${port}` })).status).toBe(404);
    expect((await send('GET', '/__velocity/build-state', { host: `${randomUUID()}.localhost:3000` })).status).toBe(404);
    expect((await send('POST', '/__velocity/build-state')).status).toBe(405);
  });

  it('takes the page\'s runtime errors as runtime diagnostics', async () => {
    const stack = `Error: boom\n    at onClick (http://${host}/src/App.jsx?t=1:26:12)`;
    const answer = await report({ errors: [{ message: 'boom', source: `http://${host}/src/App.jsx?t=1`, line: 26, column: 12, stack }] });
    expect(answer.status).toBe(204);
    const { state: status, diagnostics } = await state();
    expect(status).toBe('errors');
    expect(diagnostics).toEqual([{ kind: 'runtime', file: 'src/App.jsx', line: 26, column: 12, message: 'boom', frame: 'Error: boom\n    at onClick (/src/App.jsx?t=1:26:12)' }]);
    container.build.codeChanged();
  });

  it('refuses what is not a report, naming the field', async () => {
    expect(await report({ errors: [{ message: 1 }] })).toMatchObject({ status: 400, body: expect.stringContaining('"field":"errors.0.message"') });
    expect(await report({ errors: [{ message: 'x', extra: true }] })).toMatchObject({ status: 400, body: expect.stringContaining('"field":"errors.0.extra"') });
    expect(await report({ errors: [] })).toMatchObject({ status: 400, body: expect.stringContaining('"field":"errors"') });
    expect(await report('{not json')).toMatchObject({ status: 400, body: expect.stringContaining('"field":"body"') });
    expect(await report({ errors: [{ message: 'x' }] }, { 'content-type': 'text/plain' })).toMatchObject({ status: 415 });
    expect(await report({ errors: [{ message: 'x'.repeat(20_000) }] })).toMatchObject({ status: 413, body: expect.stringContaining('"field":"body"') });
    expect((await send('GET', '/__velocity/runtime-errors')).status).toBe(405);
    expect((await state()).state).toBe('ok');
  });

  it('records a module the page cannot load (404) until it loads', async () => {
    viteStatus.set('/src/Missing.jsx', 404);
    // Each module load says the build state when it was asked for.
    expect((await send('GET', '/src/Missing.jsx', { headers: { 'sec-fetch-dest': 'script' } })).headers['x-velocity-build']).toBe('ok');
    // A fetch of the app (no module load) answering 404 is the app's business, not the build's.
    await send('GET', '/api/thing', { headers: { 'sec-fetch-dest': 'empty' } });
    await until('the 404 to be recorded', () => container.build.current.state === 'errors');
    expect((await state()).diagnostics).toEqual([{ kind: 'build', file: 'src/Missing.jsx', message: expect.stringContaining('answered 404') }]);
    viteStatus.delete('/src/Missing.jsx');
    expect((await send('GET', '/src/Missing.jsx', { headers: { 'sec-fetch-dest': 'script' } })).headers['x-velocity-build']).toBe('errors');
    await until('the module to load', () => container.build.current.state === 'ok');
  });

  it('takes at most 30 reports every 10 s (then 429)', async () => {
    const answers = [];
    for (let i = 0; i < 32; i++) answers.push((await report({ errors: [{ message: `error ${i}` }] })).status);
    expect(answers.filter((s) => s === 429).length).toBeGreaterThanOrEqual(2);
    expect(answers.slice(0, 5).every((s) => s === 204 || s === 429)).toBe(true);
    container.build.codeChanged();
  });
});

describe('the runtime-errors client', () => {
  it('goes first in the head, once, and is plain script', () => {
    const page = '<!doctype html>\n<html lang="en">\n  <head>\n    <meta charset="UTF-8" />\n<script type="module" src="/@vite/client"></script></head><body></body></html>';
    const injected = injectRuntimeErrorsClient(page);
    expect(injected.indexOf(RUNTIME_ERRORS_CLIENT)).toBeLessThan(injected.indexOf('<meta'));
    expect(injectRuntimeErrorsClient(injected)).toBe(injected);
    expect(injectRuntimeErrorsClient('<div>no head</div>').startsWith('<script>')).toBe(true);
    // It parses as a classic script (no import/export, no syntax newer than the page may run).
    expect(() => new Function(RUNTIME_ERRORS_CLIENT)).not.toThrow();
  });
});

describe('diagnostics reporter', () => {
  const sessionId = randomUUID();
  const received: { authorization?: string; body: BuildState }[] = [];
  const statuses: number[] = [];
  let api: Server;
  let url: string;

  beforeAll(async () => {
    api = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        received.push({ authorization: req.headers.authorization, body: JSON.parse(body) });
        res.writeHead(statuses.shift() ?? 200, { 'content-type': 'application/json' });
        res.end('{}');
      });
    });
    await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(api.address() as AddressInfo).port}/v1/machines/${sessionId}/diagnostics`;
  });

  afterAll(async () => {
    await new Promise((r) => api.close(r));
  });

  it('derives its URL from FILES_URL', () => {
    expect(diagnosticsUrlOf({}, `http://api:3000/v1/machines/${sessionId}/files`)).toBe(`http://api:3000/v1/machines/${sessionId}/diagnostics`);
    expect(diagnosticsUrlOf({}, 'http://unix:/run/vp-api/api.sock:/v1/machines/x/files')).toBe('http://unix:/run/vp-api/api.sock:/v1/machines/x/diagnostics');
    expect(diagnosticsUrlOf({ DIAGNOSTICS_URL: 'http://x/d' }, 'http://api/files')).toBe('http://x/d');
  });

  describe('on a clock', () => {
    // Jest's clock drives the debounce and the resend backoff; the reports are real requests
    // (sockets and the microtasks behind them keep running: only the timers and Date are faked).
    beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] }));
    afterEach(() => jest.useRealTimers());

    /** Until the stand-in api has received `count` reports. */
    const reports = async (count: number) => {
      while (received.length < count) await new Promise((resolve) => setImmediate(resolve));
    };
    /** Sends only ever start from the reporter's one timer: none pending, none coming. */
    const timerPending = () => jest.getTimerCount() > 0;

    it('sends each change once, the last of changes close together, with the machine token; a failed send again after its backoff; 410 ends it', async () => {
      received.length = 0;
      const tracker = new BuildTracker();
      const reporter = createDiagnosticsReporter({ url, token: 'machine-token', tracker, logger, debounceMs: 50 });
      reporter.start();
      try {
        tracker.buildError({ message: 'first' });
        jest.advanceTimersByTime(30);
        tracker.buildError({ message: 'second' });
        jest.advanceTimersByTime(19);
        expect(timerPending()).toBe(true);
        jest.advanceTimersByTime(1);
        await reports(1);
        // The send on its way (flush waits for it), then nothing left to send.
        await reporter.flush();
        expect(received).toEqual([{ authorization: 'Bearer machine-token', body: expect.objectContaining({ state: 'errors', diagnostics: [{ kind: 'build', message: 'first' }, { kind: 'build', message: 'second' }] }) }]);
        expect(timerPending()).toBe(false);

        // A failed send is tried again, after its backoff (1 s), with the newest state.
        statuses.push(503);
        tracker.codeChanged();
        jest.advanceTimersByTime(50);
        await reports(2);
        await reporter.flush();
        jest.advanceTimersByTime(999);
        expect(received).toHaveLength(2);
        expect(timerPending()).toBe(true);
        jest.advanceTimersByTime(1);
        await reports(3);
        await reporter.flush();
        expect(received.slice(1).map((r) => r.body.state)).toEqual(['ok', 'ok']);
        expect(timerPending()).toBe(false);

        statuses.push(410);
        tracker.runtimeErrors([{ message: 'late' }]);
        jest.advanceTimersByTime(50);
        await reports(4);
        await reporter.flush();
        tracker.codeChanged();
        expect(timerPending()).toBe(false);
        expect(received).toHaveLength(4);
      } finally {
        reporter.stop();
      }
    });
  });

  it('sends what the tracker found before it started (a cold machine\'s first load)', async () => {
    received.length = 0;
    const tracker = new BuildTracker();
    tracker.moduleRequestFinished('/src/main.jsx', 404);
    const reporter = createDiagnosticsReporter({ url, token: 't', tracker, logger, debounceMs: 10 });
    reporter.start();
    try {
      await until('the first report', () => received.length === 1);
      expect(received[0].body.state).toBe('errors');
    } finally {
      reporter.stop();
    }
  });

  it('keeps a body within the api\'s limit by dropping frames from the last diagnostics', () => {
    const diagnostics = Array.from({ length: 20 }, (_, i) => ({ kind: 'build' as const, message: `m${i}`.padEnd(1000, 'x'), frame: '"'.repeat(2000) }));
    const body = bodyOf({ state: 'errors', diagnostics, at: 1 });
    expect(Buffer.byteLength(body)).toBeLessThanOrEqual(60_000);
    const parsed = buildStateSchema.parse(JSON.parse(body));
    expect(parsed.diagnostics[0].frame).toBeDefined();
    expect(parsed.diagnostics[19].frame).toBeUndefined();
  });
});
