/**
 * What an AI builder does to a running preview: many files at once. In
 * Chromium, through the preview's origin: a PATCH of 30 new modules that import
 * each other, and the App that imports the first, reaches the page as one
 * change (the page never sees a module import one not written yet: no error,
 * no failed request) and keeps the page's state (a hot update, not a reload).
 * The files read back as written, with the ETags the PATCH answered.
 */
import { createHash } from 'node:crypto';
import type { Browser } from 'playwright-core';
import { launchBrowser, openWatched, until, type WatchedPage } from '../src/browser';
import { eventsUntilTerminal, postSession, startSystem, type RunningSystem } from '../src/system';

jest.setTimeout(120_000);

const PARTS = 30;

describe('a change of many files to a running preview', () => {
  let system: RunningSystem;
  let browser: Browser;
  let watched: WatchedPage | undefined;

  beforeAll(async () => {
    [system, browser] = await Promise.all([startSystem(), launchBrowser()]);
  }, 90_000);

  afterAll(async () => {
    await watched?.close();
    await browser?.close();
    await system?.stop();
  });

  it('arrives whole, as one hot update, with no error on the page', async () => {
    const api = system.baseUrl;
    const project = await fetch(`${api}/v1/projects`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'batch target', templateType: 'react' }),
    }).then((r) => r.json());
    const created = await postSession(api, { projectId: project.id });
    const { events } = await eventsUntilTerminal(api, created.body.sessionId, 60_000);
    const ready = events.at(-1)!;
    if (ready.type !== 'ready') throw new Error(`session ended with ${JSON.stringify(ready)}`);

    watched = await openWatched(browser, ready.previewUrl);
    const { page } = watched;
    // The template's counter: its state must survive the change.
    await page.getByRole('button', { name: /count is/ }).click();
    await until('the count to read 1', async () => /count is 1/.test((await page.getByRole('button', { name: /count is/ }).textContent()) ?? ''));

    // p0 imports p1 … p29 imports nothing; each adds its number: the page shows the sum once every part is there.
    const parts = Array.from({ length: PARTS }, (_, i) => ({
      path: `src/parts/p${i}.jsx`,
      content: i < PARTS - 1 ? `import { total as rest } from './p${i + 1}.jsx';\nexport const total = ${i} + rest;\n` : `export const total = ${i};\n`,
    }));
    const app = (await fetch(`${api}/v1/projects/${project.id}/files/src/App.jsx`).then((r) => r.text())).replace(
      'export default function App() {',
      "import { total } from './parts/p0.jsx';\n\nfunction Total() {\n  return <p data-testid=\"total\">{total}</p>;\n}\n\nexport default function App() {",
    ).replace('<h1>', '<Total />\n      <h1>');
    expect(app).toContain('<Total />');
    const res = await fetch(`${api}/v1/projects/${project.id}/files`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ write: [...parts, { path: 'src/App.jsx', content: app }] }),
    });
    expect(res.status).toBe(200);
    const applied = await res.json();
    expect(applied.written).toHaveLength(PARTS + 1);

    const sum = (PARTS * (PARTS - 1)) / 2;
    await until('the page to show the sum of every part', async () => (await page.getByTestId('total').textContent().catch(() => null)) === String(sum), 20_000);
    expect(await page.getByRole('button', { name: /count is/ }).textContent()).toMatch(/count is 1/);
    expect(watched.reloads).toBe(0);
    expect(watched.errors).toEqual([]);
    expect(watched.failures).toEqual([]);

    // Every part edited at once: one hot update for the page, not 30 rounds (each part's change reaches the page through
    // App.jsx, the React refresh boundary that imports them all, so the one message re-imports App.jsx once).
    const before = watched.hmrMessages.length;
    const edited = parts.map((part, i) => ({ path: part.path, content: part.content.replace(`= ${i}`, `= ${i * 2}`) }));
    expect((await fetch(`${api}/v1/projects/${project.id}/files`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ write: edited }) })).status).toBe(200);
    await until('the page to show the doubled sum', async () => (await page.getByTestId('total').textContent().catch(() => null)) === String(sum * 2), 20_000);
    const messages = watched.hmrMessages.slice(before).filter((m) => m.type === 'update' || m.type === 'full-reload');
    expect(messages).toHaveLength(1);
    expect(messages[0].type).toBe('update');
    expect((messages[0].updates as { path: string }[]).map((u) => u.path)).toEqual(['/src/App.jsx']);
    expect(await page.getByRole('button', { name: /count is/ }).textContent()).toMatch(/count is 1/);
    expect(watched.reloads).toBe(0);
    expect(watched.errors).toEqual([]);

    // Read back byte for byte, under the ETags the PATCH answered.
    const p7 = await fetch(`${api}/v1/projects/${project.id}/files/src/parts/p7.jsx`);
    expect(await p7.text()).toBe(edited[7].content);
    expect(p7.headers.get('etag')).toBe(`"${createHash('sha256').update(edited[7].content).digest('hex')}"`);
    expect(applied.written.find((f: { path: string }) => f.path === 'src/parts/p0.jsx').etag).toBe(`"${createHash('sha256').update(parts[0].content).digest('hex')}"`);
  });
});
