/**
 * A preview's scripts, as an attacker writes them, in real Chromium: framed by
 * the preview page (the api's origin, holding the user's token), they try to
 * read the page, its storage, the api and another user's preview. Each
 * preview has an origin of its own, so the browser refuses every one; a
 * control read of the attacker's own origin shows the script did run.
 */
import { randomBytes } from 'node:crypto';
import type { Browser } from 'playwright-core';
import { createProject, launchBrowser, openWatched, putFile, startPreview, until, type WatchedPage } from '../src/browser';
import { startSystem, type RunningSystem } from '../src/system';

jest.setTimeout(120_000);

const TOKEN_CANARY = `token-canary-${randomBytes(8).toString('hex')}`;
const SOURCE_CANARY = `victim-source-canary-${randomBytes(8).toString('hex')}`;

const PAGE = '<!doctype html><html><head><title>x</title></head><body><pre id="result">running</pre><script type="module" src="/src/main.js"></script></body></html>';

/** What the attacker's module tries; each attempt reports what it read, or that it was refused. */
const attackScript = (apiBase: string, victimUrl: string) => `
const results = {};
const attempt = async (name, read) => {
  try { results[name] = { read: String(await read()) }; } catch (err) { results[name] = { refused: err && err.name ? err.name : String(err) }; }
};
await attempt('own origin (control)', async () => (await fetch('/src/main.js')).status);
await attempt('parent page DOM', () => window.parent.document.body.innerHTML);
await attempt('parent sessionStorage', () => window.parent.sessionStorage.getItem('velocity-preview.token'));
await attempt('parent localStorage', () => JSON.stringify(window.parent.localStorage));
await attempt('top location', () => window.top.location.href);
await attempt('own storage', () => sessionStorage.getItem('velocity-preview.token') ?? localStorage.getItem('velocity-preview.token') ?? 'nothing here');
await attempt('api with the browser credentials', async () => (await fetch(${JSON.stringify(apiBase)} + '/v1/projects', { credentials: 'include' })).text());
await attempt('api session list', async () => (await fetch(${JSON.stringify(apiBase)} + '/v1/sessions', { mode: 'cors' })).text());
await attempt('victim preview source', async () => (await fetch(${JSON.stringify(victimUrl)} + 'src/main.js')).text());
await attempt('victim preview in a frame', async () => {
  const frame = document.createElement('iframe');
  frame.src = ${JSON.stringify(victimUrl)};
  await new Promise((resolve) => { frame.onload = resolve; document.body.append(frame); });
  return frame.contentWindow.document.body.innerHTML;
});
document.getElementById('result').textContent = JSON.stringify(results);
`;

describe('a preview’s scripts, in Chromium, against the api’s origin and another preview', () => {
  let system: RunningSystem;
  let browser: Browser;
  let watched: WatchedPage | undefined;

  beforeAll(async () => {
    system = await startSystem();
    browser = await launchBrowser();
  }, 60_000);

  afterAll(async () => {
    await watched?.close();
    await browser?.close();
    await system?.stop();
  });

  async function projectWith(name: string, files: Record<string, string>): Promise<string> {
    const created = await createProject(system.baseUrl, name, 'vanilla-ts');
    expect(created.status).toBe(201);
    for (const [path, content] of Object.entries(files)) expect([200, 201]).toContain((await putFile(system.baseUrl, created.body.id, path, content)).status);
    return created.body.id;
  }

  it('cannot read the page that frames it, its storage, the api, or another preview', async () => {
    const victimProject = await projectWith('victim', { 'index.html': PAGE, 'src/main.js': `document.getElementById('result').textContent = ${JSON.stringify(SOURCE_CANARY)};` });
    const victim = await startPreview(system.baseUrl, victimProject);
    const attackerProject = await projectWith('attacker', { 'index.html': PAGE, 'src/main.js': attackScript(system.baseUrl, victim.previewUrl) });
    const attacker = await startPreview(system.baseUrl, attackerProject);
    expect(new URL(attacker.previewUrl).origin).not.toBe(new URL(victim.previewUrl).origin);
    expect(new URL(attacker.previewUrl).origin).not.toBe(system.baseUrl);

    // The preview page on the api's origin, holding the user's token, frames the attacker's preview.
    watched = await openWatched(browser, `${system.baseUrl}/`);
    const { page } = watched;
    await page.evaluate((token) => {
      sessionStorage.setItem('velocity-preview.token', token);
      localStorage.setItem('velocity-preview.secret', token);
    }, TOKEN_CANARY);
    await page.evaluate((src) => {
      const frame = document.createElement('iframe');
      frame.id = 'attack';
      frame.src = src;
      document.body.append(frame);
    }, attacker.previewUrl);
    const result = page.frameLocator('#attack').locator('#result');
    let text = 'running';
    await until('the attacker’s script to report', async () => {
      text = (await result.textContent({ timeout: 1_000 }).catch(() => null)) ?? 'running';
      return text !== 'running';
    }, 30_000);
    const results = JSON.parse(text) as Record<string, { read?: string; refused?: string }>;

    // The script ran: it read its own origin.
    expect(results['own origin (control)']).toEqual({ read: '200' });
    // Everything else was refused by the browser, or found nothing of the user's.
    for (const name of ['parent page DOM', 'parent sessionStorage', 'parent localStorage', 'top location']) {
      expect({ name, ...results[name] }).toEqual({ name, refused: 'SecurityError' });
    }
    // Its own origin's storage holds nothing of the user's (a framed origin of another site may get none at all).
    expect(results['own storage'].read ?? 'refused').toMatch(/^(nothing here|refused)$/);
    for (const name of ['api with the browser credentials', 'api session list', 'victim preview source']) {
      expect({ name, ...results[name] }).toEqual({ name, refused: 'TypeError' });
    }
    expect({ ...results['victim preview in a frame'] }).toEqual({ refused: 'SecurityError' });
    expect(text).not.toContain(TOKEN_CANARY);
    expect(text).not.toContain(SOURCE_CANARY);
  });
});
