/**
 * Build diagnostics for real: a react-template session through the whole
 * system (api, provisioner, a sandboxed preview machine running Vite), followed
 * on its event stream as an AI builder would follow it, with files written
 * through the api. A syntax error, a missing package and their fix each arrive
 * as a `diagnostics` event naming the file and line within 2 s; `GET
 * /v1/sessions/:id` says the same; and an error thrown by the page in Chromium
 * (a click handler) arrives as a runtime diagnostic mapped back to its line.
 */
import type { IncomingMessage } from 'node:http';
import type { Browser } from 'playwright-core';
import { openHttp, readSse, readText } from '@velocity/runtime';
import { sessionEventSchema, templateFiles, type SessionEvent } from '@velocity/contracts';
import { createProject, launchBrowser, openWatched, putFile, until, type WatchedPage } from '../src/browser';
import { startSystem, type RunningSystem } from '../src/system';

jest.setTimeout(120_000);

type Diagnostics = Extract<SessionEvent, { type: 'diagnostics' }>;

/** A session's events as they arrive, for as long as the test follows them. */
interface Followed {
  sessionId: string;
  events: { event: SessionEvent; receivedAt: number }[];
  /** The next event after `index` matching `match`, waiting up to `timeoutMs`. */
  next<E extends SessionEvent>(what: string, match: (event: SessionEvent) => event is E, after: number, timeoutMs: number): Promise<{ event: E; receivedAt: number; index: number }>;
  stop(): void;
}

/** POST /v1/sessions answered with the session's events, read for as long as the test runs (the stream stays open after ready). */
async function requestAndFollow(baseUrl: string, projectId: string): Promise<Followed> {
  const controller = new AbortController();
  const res: IncomingMessage = await openHttp(`${baseUrl}/v1/sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ projectId }),
    signal: controller.signal,
  });
  const sessionId = res.headers.location?.split('/').pop();
  if (res.statusCode !== 202 || !sessionId) throw new Error(`POST /v1/sessions answered ${res.statusCode}`);
  const events: Followed['events'] = [];
  void (async () => {
    try {
      for await (const frame of readSse(res)) events.push({ event: sessionEventSchema.parse(JSON.parse(frame.data)), receivedAt: Date.now() });
    } catch {
      // stopped
    }
  })();
  return {
    sessionId,
    events,
    async next(what, match, after, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const index = events.findIndex((e, i) => i > after && match(e.event));
        if (index >= 0) return { ...events[index], event: events[index].event as never, index };
        if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}; got: ${events.slice(after + 1).map((e) => JSON.stringify(e.event)).join('\n')}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    stop: () => controller.abort(),
  };
}

const isDiagnostics = (event: SessionEvent): event is Diagnostics => event.type === 'diagnostics';
const isReady = (event: SessionEvent): event is Extract<SessionEvent, { type: 'ready' }> => event.type === 'ready';

describe('build diagnostics on the session\'s event stream', () => {
  let system: RunningSystem;
  let browser: Browser | undefined;
  let followed: Followed | undefined;
  let page: WatchedPage | undefined;
  const app = templateFiles('react').find((f) => f.path === 'src/App.jsx')!.content;

  beforeAll(async () => {
    system = await startSystem();
  }, 60_000);

  afterAll(async () => {
    followed?.stop();
    await page?.close();
    await browser?.close();
    await system?.stop();
  });

  it('a syntax error, a missing import and their fix each arrive within 2 s, naming the file and line; a click that throws arrives as a runtime diagnostic', async () => {
    const project = await createProject(system.baseUrl, 'diagnostics e2e', 'react');
    expect(project.status).toBe(201);
    followed = await requestAndFollow(system.baseUrl, project.body.id);
    const ready = await followed.next('ready', isReady, -1, 60_000);
    expect(ready.event.diagnostics).toEqual([]);
    const session = () => fetch(`${system.baseUrl}/v1/sessions/${followed!.sessionId}`).then((r) => r.json());
    expect((await session()).build).toMatchObject({ state: 'ok', diagnostics: [] });
    // Through the edge, a module load carries the machine's build state (verification reads no more when all say ok).
    const module = await openHttp(`${ready.event.previewUrl}src/main.jsx`, { headers: { 'sec-fetch-dest': 'script' } });
    await readText(module);
    expect(module.headers['x-velocity-build']).toBe('ok');

    /** Writes src/App.jsx through the api; the next diagnostics event, and how long after the write it came. */
    let seen = ready.index;
    const write = async (what: string, content: string) => {
      const put = await putFile(system.baseUrl, project.body.id, 'src/App.jsx', content);
      expect(put.status).toBe(200);
      const writtenAt = Date.now();
      const next = await followed!.next(`the diagnostics event of ${what}`, isDiagnostics, seen, 10_000);
      seen = next.index;
      return { event: next.event, ms: next.receivedAt - writtenAt };
    };

    const syntax = await write('a syntax error', app.replace('<h1>Hello', '<h1>Hello {'));
    expect(syntax.event).toMatchObject({ state: 'errors', diagnostics: [{ kind: 'build', file: 'src/App.jsx', line: 8 }] });
    expect(syntax.ms).toBeLessThan(2000);
    expect((await session()).build).toMatchObject({ state: 'errors', diagnostics: syntax.event.diagnostics });

    const missing = await write('a missing package', `import x from 'no-such-package';\n${app}`);
    expect(missing.event).toMatchObject({ state: 'errors', diagnostics: [{ kind: 'build', file: 'src/App.jsx', line: 1, plugin: 'vite:import-analysis' }] });
    expect(missing.event.diagnostics[0].message).toContain('no-such-package');
    expect(missing.ms).toBeLessThan(2000);

    const fixed = await write('the fix', app);
    expect(fixed.event).toMatchObject({ state: 'ok', diagnostics: [] });
    expect(fixed.ms).toBeLessThan(2000);
    expect((await session()).build).toMatchObject({ state: 'ok', diagnostics: [] });
    console.log(`[build-diagnostics] write → event: syntax error ${syntax.ms} ms, missing package ${missing.ms} ms, fix ${fixed.ms} ms`);
    // No host path in anything the stream said.
    expect(JSON.stringify(followed.events)).not.toMatch(/\/tmp\/|"\/project\//);

    // A click handler that throws, in a real browser: line 6 of the file as written.
    const throwing = [
      'export default function App() {',
      '  return (',
      '    <main className="app">',
      '      <h1>Hello from Velocity Preview</h1>',
      '      <button type="button" onClick={() => {',
      "        throw new Error('clicked to fail');",
      '      }}>',
      '        fail',
      '      </button>',
      '    </main>',
      '  );',
      '}',
      '',
    ].join('\n');
    expect((await putFile(system.baseUrl, project.body.id, 'src/App.jsx', throwing)).status).toBe(200);
    browser = await launchBrowser();
    page = await openWatched(browser, ready.event.previewUrl);
    const button = page.page.locator('button', { hasText: 'fail' });
    await until('the page to show the new button', async () => (await button.count()) === 1, 15_000);
    await button.click();
    const runtime = await followed.next('the runtime error of the click', (e): e is Diagnostics => isDiagnostics(e) && e.diagnostics.some((d) => d.kind === 'runtime'), seen, 10_000);
    expect(runtime.event.state).toBe('errors');
    expect(runtime.event.diagnostics.find((d) => d.kind === 'runtime')).toMatchObject({ kind: 'runtime', file: 'src/App.jsx', line: 6, message: expect.stringContaining('clicked to fail') });
    expect((await session()).build.diagnostics).toEqual(runtime.event.diagnostics);
  });
});
