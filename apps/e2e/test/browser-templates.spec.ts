/**
 * Every template in a real Chromium, through the api's edge, for real: a project
 * made through the api, a session per template (all at once), the page loads
 * with no failed request, the counter counts, and a file PUT through the api
 * reaches the page over Vite's HMR websocket, which goes through the edge.
 *
 * React and Vue keep component state across the change (Fast Refresh, vue-hmr's
 * rerender). Svelte 5's HMR remounts the edited component and resets its local
 * $state (sveltejs/svelte#14434), so the svelte template keeps its count in a
 * module of its own (src/counter.svelte.js), which a hot update of App.svelte
 * does not run again. The vanilla-ts template's main.ts accepts no
 * hot update, so Vite reloads the page: the new text shows and the counter starts
 * again from 0; the test checks exactly that.
 */
import type { Browser } from 'playwright-core';
import { createRedis, EventLog } from '@velocity/ops';
import { PostgresSessionStore } from '@velocity/session-store';
import { requestText } from '@velocity/runtime';
import { templateFiles } from '@velocity/contracts';
import {
  clickCounter,
  counterText,
  createProject,
  launchBrowser,
  openWatched,
  putFile,
  startPreview,
  until,
  waitForHeading,
  type WatchedPage,
} from '../src/browser';
import { startSystem, type RunningSystem } from '../src/system';

jest.setTimeout(90_000);

interface TemplateCase {
  type: string;
  /** The file whose heading the test changes. */
  file: string;
  /** Whether the change keeps the page's state (hot update) or reloads it (vanilla-ts). */
  hot: boolean;
}

const TEMPLATES: TemplateCase[] = [
  { type: 'react', file: 'src/App.jsx', hot: true },
  { type: 'vue', file: 'src/App.vue', hot: true },
  { type: 'svelte', file: 'src/App.svelte', hot: true },
  { type: 'vanilla-ts', file: 'src/main.ts', hot: false },
];
const HEADING = 'Hello from Velocity Preview';

interface Preview {
  sessionId: string;
  previewUrl: string;
}

describe('templates in Chromium through the edge, with live files over HMR', () => {
  let system: RunningSystem;
  let browser: Browser;
  let port: string;
  const projects = new Map<string, string>();
  const previews = new Map<string, Preview[]>();
  const pages: WatchedPage[] = [];
  const started = Date.now();
  const mark = (what: string) => console.log(`[browser-templates] ${((Date.now() - started) / 1000).toFixed(1)} s ${what}`);

  beforeAll(async () => {
    [system, browser] = await Promise.all([startSystem(), launchBrowser()]);
    port = new URL(system.baseUrl).port;
    mark('system and browser up');
    for (const { type } of TEMPLATES) {
      const created = await createProject(system.baseUrl, `${type} e2e`, type);
      expect(created.status).toBe(201);
      projects.set(type, created.body.id);
    }
    // Every session at once; the react project gets a second one, open at the same time.
    const wanted = [...TEMPLATES.map((t) => t.type), 'react'];
    const ready = await Promise.all(wanted.map((type) => startPreview(system.baseUrl, projects.get(type)!)));
    wanted.forEach((type, i) => previews.set(type, [...(previews.get(type) ?? []), ready[i]]));
    mark(`${ready.length} sessions ready`);
  }, 90_000);

  afterAll(async () => {
    await Promise.allSettled(pages.map((p) => p.close()));
    await browser?.close();
    await system?.stop();
    mark('stopped');
  });

  async function open(preview: Preview): Promise<WatchedPage> {
    const watched = await openWatched(browser, preview.previewUrl);
    pages.push(watched);
    return watched;
  }

  /** The template's file with a new heading. */
  const changed = (template: TemplateCase, heading: string) => {
    const original = templateFiles(template.type).find((f) => f.path === template.file)!.content;
    expect(original).toContain(HEADING);
    return original.replace(HEADING, heading);
  };

  const edgeSocketOf = (watched: WatchedPage, preview: Preview) =>
    watched.websockets.find((ws) => ws.url().startsWith(`ws://${preview.sessionId}.localhost:${port}/`));

  it.each(TEMPLATES)('$type: loads through the edge, counts, and shows a file PUT through the api without a manual reload', async (template) => {
    const preview = previews.get(template.type)![0];
    expect(preview.previewUrl).toBe(system.previewUrlOf(preview.sessionId));
    const watched = await open(preview);
    const { page } = watched;
    await waitForHeading(page, HEADING);
    expect(await counterText(page)).toBe('count is 0');
    await clickCounter(page, 2);
    expect(await counterText(page)).toBe('count is 2');

    // The HMR websocket is open, and it went through the edge (the api's port, the session's own origin).
    await until('the HMR websocket', () => edgeSocketOf(watched, preview) !== undefined);
    expect(watched.websockets.map((ws) => ws.url()).every((url) => url.startsWith(`ws://${preview.sessionId}.localhost:${port}/`))).toBe(true);
    await page.evaluate(() => ((window as unknown as { __vpMarker?: string }).__vpMarker = 'same page'));

    const heading = `Hello from ${template.type}, changed live`;
    const put = await putFile(system.baseUrl, projects.get(template.type)!, template.file, changed(template, heading));
    expect(put.status).toBe(200);
    const sentAt = Date.now();
    await waitForHeading(page, heading);
    mark(`${template.type}: new heading on the page ${Date.now() - sentAt} ms after the PUT answered`);

    const marker = await page.evaluate(() => (window as unknown as { __vpMarker?: string }).__vpMarker);
    if (template.hot) {
      // A hot update: same page (no reload), state kept, and Vite's update came over the edge's websocket.
      expect(watched.reloads).toBe(0);
      expect(marker).toBe('same page');
      expect(await counterText(page)).toBe('count is 2');
      expect(watched.hmrMessages.some((m) => m.type === 'update')).toBe(true);
    } else {
      // vanilla-ts: main.ts accepts no hot update, so Vite reloads the page (told over the edge's
      // websocket); the new text shows and the counter starts again at 0.
      expect(watched.hmrMessages.some((m) => m.type === 'full-reload')).toBe(true);
      expect(watched.reloads).toBe(1);
      expect(marker).toBeUndefined();
      expect(await counterText(page)).toBe('count is 0');
      await until('the HMR websocket after the reload', () => watched.websockets.filter((ws) => !ws.isClosed()).length > 0);
    }
    expect(edgeSocketOf(watched, preview)).toBeDefined();
    expect(watched.failures).toEqual([]);
    expect(watched.errors).toEqual([]);
  });

  it('two sessions of one project, open at once, both get the same change and keep their state', async () => {
    const react = TEMPLATES[0];
    const [first, second] = previews.get('react')!;
    expect(second.sessionId).not.toBe(first.sessionId);
    const [a, b] = await Promise.all([open(first), open(second)]);
    await Promise.all([waitForHeading(a.page, 'Hello from react, changed live'), waitForHeading(b.page, 'Hello from react, changed live')]);
    await clickCounter(a.page, 1);
    await clickCounter(b.page, 3);

    const heading = 'Both sessions see this';
    expect((await putFile(system.baseUrl, projects.get('react')!, react.file, changed(react, heading))).status).toBe(200);
    await Promise.all([waitForHeading(a.page, heading), waitForHeading(b.page, heading)]);
    expect(await counterText(a.page)).toBe('count is 1');
    expect(await counterText(b.page)).toBe('count is 3');
    for (const [watched, preview] of [
      [a, first],
      [b, second],
    ] as const) {
      expect(watched.reloads).toBe(0);
      expect(edgeSocketOf(watched, preview)).toBeDefined();
      expect(watched.failures).toEqual([]);
    }
  });

  it('a machine whose session ended says so on /health (503, session failing)', async () => {
    const [, second] = previews.get('react')!;
    const machine = await system.machines.findBySession(second.sessionId);
    expect(machine).not.toBeNull();
    // Node's HTTP client: a sandboxed machine is on a Unix socket.
    const before = await requestText(`${machine!.url}/health`);
    expect(before.status).toBe(200);
    expect(JSON.parse(before.body)).toEqual({ status: 'ok', devServer: 'ok', data: 'ok', session: 'ok', sessionId: second.sessionId });

    // What cleanup does first when a session ends: the row says `ending` and the event is stored.
    // The system's own database (startSystem gives each system one).
    const store = new PostgresSessionStore(String(system.env.DATABASE_URL), { max: 1 });
    const redis = createRedis(String(system.env.REDIS_URL ?? 'redis://127.0.0.1:6379'));
    try {
      expect(await store.transition(second.sessionId, 'ending')).not.toBeNull();
      await new EventLog(redis, String(system.env.QUEUE_PREFIX), 60).append({ type: 'ending', sessionId: second.sessionId, at: Date.now(), reason: 'test' });
    } finally {
      await store.close();
      redis.disconnect();
    }
    let last: unknown;
    await until('the machine to report its session failing', async () => {
      const res = await requestText(`${machine!.url}/health`);
      last = { status: res.status, body: JSON.parse(res.body) };
      return res.status === 503;
    });
    expect(last).toEqual({ status: 503, body: { status: 'failing', devServer: 'ok', data: 'ok', session: 'failing', sessionId: second.sessionId } });
  });
});
