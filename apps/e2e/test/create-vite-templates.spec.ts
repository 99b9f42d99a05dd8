/**
 * Every create-vite template as a user uploads it, file by file (its own
 * package.json, vite.config, tsconfig, assets): its dependencies are installed
 * from a real registry run locally, the machine runs the project's own Vite and
 * config, and in Chromium, through the preview's origin, the page renders with
 * no console error and no failed request, its counter counts, and an edit of
 * its heading shows without a manual reload.
 *
 * What an edit does is the framework's: React (Fast Refresh), Preact (Prefresh)
 * and Vue keep the component's state; Svelte, Solid and Qwik update or reload
 * as their plugins decide; Lit and the vanilla templates accept no hot update,
 * so Vite reloads the page. The test checks state only where it is kept.
 *
 * The qwik templates ask for a Qwik version no registry has (`^1.20.2`; the
 * newest published is 1.20.1): their sessions fail at install-dependencies,
 * naming the package and the registry's answer, which is what a user needs.
 */
import type { Browser } from 'playwright-core';
import { launchBrowser, openWatched, startPreview, until, type WatchedPage } from '../src/browser';
import { putProjectFile, uploadProject, CREATE_VITE_TEMPLATES, EXPECTED_INSTALL_FAILURES, createViteTemplateFiles, startTestRegistry, type RunningRegistry } from '@velocity/testing';
import { startSystem, type RunningSystem } from '../src/system';

jest.setTimeout(240_000);

const KEEPS_STATE = new Set(['react', 'react-ts', 'preact', 'preact-ts', 'vue', 'vue-ts']);
const HEADING = 'Get started';

/** The template type a project is made with (it decides nothing for a project with its own vite.config). */
const templateTypeOf = (name: string) => (name.startsWith('vue') ? 'vue' : name.startsWith('svelte') ? 'svelte' : name.startsWith('vanilla') ? 'vanilla-ts' : 'react');

describe('create-vite templates, installed and run as users upload them', () => {
  let registry: RunningRegistry;
  let system: RunningSystem;
  let browser: Browser;
  const previews = new Map<string, { projectId: string; previewUrl: string; sessionId: string }>();
  /** Why a template did not become ready: its own test fails with it. */
  const notReady = new Map<string, Error>();
  const pages: WatchedPage[] = [];
  const started = Date.now();
  const mark = (what: string) => console.log(`[create-vite] ${((Date.now() - started) / 1000).toFixed(1)} s ${what}`);

  beforeAll(async () => {
    registry = await startTestRegistry();
    [system, browser] = await Promise.all([startSystem({ NPM_REGISTRY_URL: registry.url }), launchBrowser()]);
    // Two at a time: each install is npm's CPU and disk.
    const queue = [...CREATE_VITE_TEMPLATES];
    await Promise.all(
      [0, 1].map(async () => {
        for (let name = queue.shift(); name; name = queue.shift()) {
          try {
            const projectId = await uploadProject(system.baseUrl, `create-vite ${name}`, templateTypeOf(name), await createViteTemplateFiles(name));
            const preview = await startPreview(system.baseUrl, projectId, 200_000);
            previews.set(name, { projectId, ...preview });
            mark(`${name} ready`);
          } catch (error) {
            notReady.set(name, error as Error);
          }
        }
      }),
    );
  }, 900_000);

  afterAll(async () => {
    await Promise.allSettled(pages.map((p) => p.close()));
    await browser?.close();
    await system?.stop();
    await registry?.stop();
  });

  const installable = CREATE_VITE_TEMPLATES.filter((name) => !EXPECTED_INSTALL_FAILURES[`create-vite/${name}`]);
  const uninstallable = CREATE_VITE_TEMPLATES.filter((name) => !installable.includes(name));

  it.each(uninstallable)('%s: fails at install-dependencies, naming the package and what the registry said', (name) => {
    const error = notReady.get(name);
    expect(error?.message).toMatch(/"type":"failed","step":"install-dependencies","reason":"install-dependencies: Installing \d+ dependencies failed: /);
    expect(error?.message).toMatch(/No matching version found for @builder\.io\/qwik@\^1\.20\.2\. \(ETARGET\)/);
    expect(error?.message).toMatch(/"retryable":false/);
  });

  it.each(installable)('%s: renders, counts, and shows an edit', async (name) => {
    const preview = previews.get(name);
    if (!preview) throw notReady.get(name) ?? new Error(`${name} did not become ready`);
    const watched = await openWatched(browser, preview.previewUrl);
    pages.push(watched);
    const { page } = watched;
    // Locators reach into shadow roots (Lit's element).
    await page.locator('h1', { hasText: HEADING }).first().waitFor({ timeout: 20_000 });
    const counter = page.locator('button.counter').first();
    await counter.click();
    await counter.click();
    await until(`${name}'s counter to read 2`, async () => /Count is 2/.test((await counter.textContent()) ?? ''));
    // Every image the page shows loaded (hero.png is binary, uploaded as bytes).
    const images = await page.locator('img').evaluateAll((imgs) => imgs.map((img) => ({ src: (img as HTMLImageElement).src, width: (img as HTMLImageElement).naturalWidth })));
    expect(images.length).toBeGreaterThan(0);
    expect(images.filter((img) => img.width === 0)).toEqual([]);

    // Lit's heading is slotted content of its element, in index.html.
    const file = (await createViteTemplateFiles(name)).find((f) => (f.path.startsWith('src/') || f.path === 'index.html') && f.content.toString('utf8').includes(`<h1>${HEADING}</h1>`));
    if (!file) throw new Error(`${name} has no source file with its heading`);
    const heading = `Edited ${name}`;
    const put = await putProjectFile(system.baseUrl, preview.projectId, { path: file.path, content: Buffer.from(file.content.toString('utf8').replace(`<h1>${HEADING}</h1>`, `<h1>${heading}</h1>`)) });
    expect(put.status).toBe(200);
    await page.locator('h1', { hasText: heading }).first().waitFor({ timeout: 20_000 });
    if (KEEPS_STATE.has(name)) {
      expect(watched.reloads).toBe(0);
      expect(await page.locator('button.counter').first().textContent()).toMatch(/Count is 2/);
    }
    expect(watched.failures).toEqual([]);
    expect(watched.errors).toEqual([]);
  });
});
