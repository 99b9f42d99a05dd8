/**
 * A generated-style app as an AI app builder makes it (React + TypeScript, its
 * own vite.config.ts with plugin-react and Tailwind 4, react-router-dom with
 * several routes, lucide-react icons, a zustand store, a `@/` path alias),
 * uploaded file by file, with its dependencies installed from a real registry
 * run locally: in Chromium, through the preview's origin, routes work at their
 * own paths (also when loaded directly), Tailwind's styles and the icons load,
 * and the store's state survives a hot edit. A second session of the project
 * finds its dependency set installed.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import type { SessionEvent } from '@velocity/contracts';
import { launchBrowser, openWatched, until, type WatchedPage } from '../src/browser';
import { putProjectFile, uploadProject, fixtureProjectFiles, startTestRegistry, type RunningRegistry } from '@velocity/testing';
import { eventsUntilTerminal, postSession, startSystem, type RunningSystem } from '../src/system';

jest.setTimeout(240_000);

describe('a generated app with its own dependencies and config', () => {
  let registry: RunningRegistry;
  let system: RunningSystem;
  let browser: Browser;
  let projectId: string;
  let dependencyCache: string | undefined;
  const pages: WatchedPage[] = [];

  /** A session of the project: its events up to `ready`. */
  async function preview(): Promise<{ previewUrl: string; events: SessionEvent[] }> {
    const created = await postSession(system.baseUrl, { projectId });
    expect(created.status).toBe(202);
    const { events } = await eventsUntilTerminal(system.baseUrl, created.body.sessionId, 200_000);
    const last = events.at(-1)!;
    if (last.type !== 'ready') throw new Error(`session ended with ${JSON.stringify(last)}\n${system.output.provisioner.slice(-30).join('\n')}`);
    return { previewUrl: last.previewUrl, events };
  }

  const installDone = (events: SessionEvent[]) => events.find((e) => e.type === 'progress' && e.step === 'install-dependencies' && e.state === 'done');

  beforeAll(async () => {
    registry = await startTestRegistry();
    // A cache of its own: another spec of the run may have installed this set in the shared one already.
    dependencyCache = mkdtempSync(join(tmpdir(), 'vp-generated-app-deps-'));
    chmodSync(dependencyCache, 0o755);
    [system, browser] = await Promise.all([startSystem({ NPM_REGISTRY_URL: registry.url, DEPENDENCY_CACHE_DIR: dependencyCache }), launchBrowser()]);
    projectId = await uploadProject(system.baseUrl, 'generated app', 'react', await fixtureProjectFiles('generated-app'));
  }, 120_000);

  afterAll(async () => {
    await Promise.allSettled(pages.map((p) => p.close()));
    await browser?.close();
    await system?.stop();
    await registry?.stop();
    if (dependencyCache) rmSync(dependencyCache, { recursive: true, force: true });
  });

  let first: { previewUrl: string; events: SessionEvent[] };

  it('installs the dependencies as declared, with progress, then is ready', async () => {
    first = await preview();
    const running = first.events.filter((e) => e.type === 'progress' && e.step === 'install-dependencies' && e.state === 'running');
    expect(running.length).toBeGreaterThan(0);
    const done = installDone(first.events);
    expect(done).toMatchObject({ cached: false });
    expect((done as { packages: number }).packages).toBeGreaterThan(20);
    expect((done as { bytes: number }).bytes).toBeGreaterThan(10_000_000);
  });

  it('routes at their own paths, Tailwind styles and icons, state kept across a hot edit', async () => {
    const watched = await openWatched(browser, first.previewUrl);
    pages.push(watched);
    const { page } = watched;
    await page.getByTestId('heading-home').waitFor();
    expect(await page.getByTestId('heading-home').textContent()).toBe('Grow your tasks');
    // Tailwind 4 compiled the project's theme: the hero's gradient uses its brand colour.
    const heroBackground = await page.locator('section').first().evaluate((el) => getComputedStyle(el).backgroundImage);
    expect(heroBackground).toMatch(/linear-gradient/);
    // lucide-react's icons are SVGs with their paths.
    expect(await page.locator('nav svg.lucide').count()).toBeGreaterThanOrEqual(5);

    await page.getByTestId('counter-button').click();
    await page.getByTestId('counter-button').click();
    await until('the count to read 2', async () => (await page.getByTestId('counter-value').textContent()) === '2');

    for (const [link, heading, path] of [
      ['nav-items', 'heading-items', '/items'],
      ['nav-about', 'heading-about', '/about'],
      ['nav-settings', 'heading-settings', '/settings'],
      ['nav-home', 'heading-home', '/'],
    ]) {
      await page.getByTestId(link).click();
      await page.getByTestId(heading).waitFor();
      expect(new URL(page.url()).pathname).toBe(path);
    }
    expect(await page.getByTestId('counter-value').textContent()).toBe('2');

    // Router navigations count as navigations too: a marker on the window tells a reload apart.
    await page.evaluate(() => ((window as unknown as { __vpMarker?: string }).__vpMarker = 'same page'));
    const hero = (await fixtureProjectFiles('generated-app')).find((f) => f.path === 'src/components/Hero.tsx')!;
    const edited = hero.content.toString('utf8').replace("'Grow your tasks'", "'Grow your tasks, edited'");
    expect((await putProjectFile(system.baseUrl, projectId, { path: hero.path, content: Buffer.from(edited) })).status).toBe(200);
    await until('the edited heading', async () => (await page.getByTestId('heading-home').textContent()) === 'Grow your tasks, edited', 20_000);
    expect(await page.evaluate(() => (window as unknown as { __vpMarker?: string }).__vpMarker)).toBe('same page');
    expect(await page.getByTestId('counter-value').textContent()).toBe('2');
    expect(watched.failures).toEqual([]);
    expect(watched.errors).toEqual([]);
  });

  it('serves a route loaded directly at its path (the app falls back to index.html)', async () => {
    const watched = await openWatched(browser, new URL('/items/2', first.previewUrl).href);
    pages.push(watched);
    await watched.page.getByTestId('heading-item').waitFor();
    expect(await watched.page.getByTestId('heading-item').textContent()).toBe('Plant basil');
    expect(watched.failures).toEqual([]);
    expect(watched.errors).toEqual([]);
  });

  it('a second session of the project installs nothing', async () => {
    const second = await preview();
    expect(installDone(second.events)).toMatchObject({ cached: true });
    expect(second.events.some((e) => e.type === 'progress' && e.state === 'running')).toBe(false);
  });

  it("a project whose vite.config cannot load fails at once, with the config's own error", async () => {
    const files = [
      { path: 'index.html', content: Buffer.from('<!doctype html><html><body><script type="module" src="/src/main.js"></script></body></html>') },
      { path: 'src/main.js', content: Buffer.from("document.body.append('hi');") },
      { path: 'vite.config.js', content: Buffer.from("throw new Error('this config is broken on purpose');\n") },
    ];
    const brokenId = await uploadProject(system.baseUrl, 'broken config', 'vanilla-ts', files);
    const created = await postSession(system.baseUrl, { projectId: brokenId });
    const { events } = await eventsUntilTerminal(system.baseUrl, created.body.sessionId, 60_000);
    const last = events.at(-1)!;
    expect(last).toMatchObject({ type: 'failed', step: 'verify-url', retryable: false });
    expect((last as { reason: string }).reason).toMatch(/^verify-url: The project's dev server could not start: Vite \S+ could not start with the project's vite\.config\.js: .*this config is broken on purpose/);
    // One attempt, failed by the machine's answer (not a wait until the step's timeout, not retried).
    expect(events.filter((e) => e.type === 'progress' && e.step === 'ensure-project' && e.state === 'started')).toHaveLength(1);
  });
});
