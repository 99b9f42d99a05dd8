/**
 * The preview page at `/`, in a real Chromium against the real system: press
 * Preview on the demo project, see the steps arrive with their times, use the
 * app in the frame, extend and stop it; errors are shown, not swallowed.
 */
import { randomUUID } from 'node:crypto';
import type { Browser, Page } from 'playwright-core';
import { DEMO_PROJECT_ID, PROVISION_STEPS } from '@velocity/shared';
import { launchBrowser, openWatched, until, type WatchedPage } from '../src/browser';
import { startSystem, type RunningSystem } from '../src/system';

jest.setTimeout(120_000);

describe('preview page', () => {
  let system: RunningSystem;
  let browser: Browser;
  let watched: WatchedPage | undefined;

  beforeAll(async () => {
    [system, browser] = await Promise.all([startSystem(), launchBrowser()]);
  });

  afterEach(async () => {
    await watched?.close();
    watched = undefined;
  });

  afterAll(async () => {
    await browser?.close();
    await system?.stop();
  });

  const statusOf = (page: Page) => page.locator('#status').getAttribute('data-status');

  it('is served at / with its scripts, before the api’s routes', async () => {
    const res = await fetch(`${system.baseUrl}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await res.text()).toContain('<script type="module" src="/ui/app.js">');
    const js = await fetch(`${system.baseUrl}/ui/app.js`);
    expect(js.headers.get('content-type')).toMatch(/^text\/javascript/);
    expect(await (await fetch(`${system.baseUrl}/ui/config.json`)).json()).toMatchObject({ demoProjectId: DEMO_PROJECT_ID, steps: [...PROVISION_STEPS] });
    // The api's own routes are untouched.
    expect((await fetch(`${system.baseUrl}/health`)).status).toBe(200);
    expect((await fetch(`${system.baseUrl}/ui/nope.js`)).status).toBe(404);
  });

  it('Preview on the demo project: steps with times, the app in the frame, extend, stop', async () => {
    watched = await openWatched(browser, `${system.baseUrl}/`);
    const { page } = watched;
    await page.waitForFunction(() => document.querySelectorAll('#project option').length > 1);
    expect(await page.locator('#project').inputValue()).toBe(DEMO_PROJECT_ID);

    await page.click('#preview');
    await page.locator('#session').waitFor({ state: 'visible' });

    // Each step is listed, and shows its time once done.
    await page.waitForFunction((count) => document.querySelectorAll('#steps li[data-state="done"]').length === count, PROVISION_STEPS.length, { timeout: 60_000 });
    const steps = await page.locator('#steps li').evaluateAll((items) =>
      items.map((li) => ({ step: li.getAttribute('data-step'), state: li.getAttribute('data-state'), time: li.querySelector('.time')?.textContent ?? '' })),
    );
    expect(steps.map((s) => s.step)).toEqual([...PROVISION_STEPS]);
    for (const step of steps) {
      expect(step.state).toBe('done');
      expect(step.time).toMatch(/^\d+ ms · \+\d+\.\d\ds$/);
    }
    expect(await statusOf(page)).toBe('active');

    // The app, in the frame, from the URL the page shows.
    const previewUrl = (await page.locator('#preview-url').getAttribute('href'))!;
    const sessionId = (await page.locator('#session-id').textContent())!;
    expect(previewUrl).toBe(system.previewUrlOf(sessionId));
    const frame = page.frameLocator('#frame');
    await frame.locator('button', { hasText: 'count is 0' }).waitFor({ timeout: 30_000 });
    await frame.locator('button', { hasText: 'count is' }).click();
    await frame.locator('button', { hasText: 'count is 1' }).waitFor();

    // Extend moves the expiry shown (and the row's).
    const before = (await page.locator('#expires').getAttribute('datetime'))!;
    const beforeText = await page.locator('#expires').textContent();
    await page.click('#extend');
    await until('the expiry to move', async () => (await page.locator('#expires').getAttribute('datetime')) !== before);
    const after = (await page.locator('#expires').getAttribute('datetime'))!;
    expect(Date.parse(after) - Date.parse(before)).toBe(300_000);
    expect(await page.locator('#expires').textContent()).not.toBe(beforeText);
    const row = await (await fetch(`${system.baseUrl}/v1/sessions/${sessionId}`)).json();
    expect(row.expiresAt).toBe(after);

    // Stop: the page says ended, and the frame's URL answers 410 from then on.
    const gone = page.waitForResponse((res) => res.url() === previewUrl && res.status() === 410, { timeout: 30_000 });
    await page.click('#stop');
    await until('the page to show ended', async () => (await statusOf(page)) === 'ended', 30_000);
    await gone;
    expect((await fetch(previewUrl)).status).toBe(410);
    expect(await page.locator('#stop').isDisabled()).toBe(true);
    expect(await page.locator('#extend').isDisabled()).toBe(true);
    expect(await page.locator('#error').isHidden()).toBe(true);
    // No script error; the only failed loads are the expected ones: the ended frame (410) and,
    // on an api without a project list, GET /v1/projects (404).
    const expected = [`(${previewUrl})`, `(${system.baseUrl}/v1/projects)`];
    expect(watched.errors.filter((e) => !(e.startsWith('console: Failed to load resource') && expected.some((x) => e.endsWith(x))))).toEqual([]);
  });

  it('shows an unknown project’s 404 clearly', async () => {
    watched = await openWatched(browser, `${system.baseUrl}/`);
    const { page } = watched;
    await page.waitForFunction(() => document.querySelectorAll('#project option').length > 1);
    const unknown = randomUUID();
    await page.click('#more summary');
    await page.fill('#project-id', unknown);
    await page.click('#preview');
    const error = page.locator('#error');
    await error.waitFor({ state: 'visible' });
    expect(await error.textContent()).toBe(`POST /v1/sessions answered 404: Project ${unknown} does not exist`);
    expect(await error.getAttribute('role')).toBe('alert');
    expect(await page.locator('#session').isHidden()).toBe(true);
  });

  it('with an access token: every api call carries it, and the events are read with fetch (EventSource sends no headers)', async () => {
    watched = await openWatched(browser, `${system.baseUrl}/`);
    const { page } = watched;
    const seen: { url: string; authorization?: string }[] = [];
    page.on('request', (req) => {
      if (new URL(req.url()).pathname.startsWith('/v1/')) seen.push({ url: req.url(), authorization: req.headers().authorization });
    });
    await page.waitForFunction(() => document.querySelectorAll('#project option').length > 1);
    await page.click('#more summary');
    await page.fill('#token', 'a-token-for-the-test');
    await page.press('#token', 'Tab');
    const from = seen.length; // the project list read before the token was given went without it
    await page.click('#preview');
    await page.waitForFunction(() => document.querySelector('#status')?.getAttribute('data-status') === 'active', undefined, { timeout: 60_000 });
    expect(await page.locator('#steps li[data-state="done"]').count()).toBe(PROVISION_STEPS.length);
    const sessionId = (await page.locator('#session-id').textContent())!;
    const after = seen.slice(from);
    expect(after.map((r) => new URL(r.url).pathname)).toEqual(expect.arrayContaining(['/v1/sessions', `/v1/sessions/${sessionId}/events`]));
    expect(after.filter((r) => r.authorization !== 'Bearer a-token-for-the-test')).toEqual([]);
    // Kept for this tab only, on the api's origin (previews have origins of their own); never in localStorage.
    expect(await page.evaluate(() => sessionStorage.getItem('velocity-preview.token'))).toBe('a-token-for-the-test');
    expect(await page.evaluate(() => localStorage.getItem('velocity-preview.token'))).toBeNull();
    await page.click('#stop');
    await until('the page to show ended', async () => (await statusOf(page)) === 'ended', 30_000);
  });

  it('a project made from a template previews too', async () => {
    watched = await openWatched(browser, `${system.baseUrl}/`);
    const { page } = watched;
    await page.waitForFunction(() => document.querySelectorAll('#project option').length > 1);
    await page.selectOption('#project', 'template:vue');
    await page.click('#preview');
    await page.waitForFunction(() => document.querySelector('#status')?.getAttribute('data-status') === 'active', undefined, { timeout: 60_000 });
    // The new project (POST /v1/projects) is in the list and selected.
    const projectId = await page.locator('#project').inputValue();
    expect(projectId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(await (await fetch(`${system.baseUrl}/v1/projects/${projectId}`)).json()).toMatchObject({ id: projectId, templateType: 'vue' });
    await page.frameLocator('#frame').locator('button', { hasText: 'count is 0' }).waitFor({ timeout: 30_000 });
    await page.click('#stop');
    await until('the page to show ended', async () => (await statusOf(page)) === 'ended', 30_000);
  });
});

describe('preview page, when provisioning fails', () => {
  let system: RunningSystem;
  let browser: Browser;

  beforeAll(async () => {
    // Every machine create fails, once: the session fails at create-machine with the provider's reason.
    [system, browser] = await Promise.all([startSystem({ FAULTS: 'fail-create=1', PROVISION_ATTEMPTS: '1' }), launchBrowser()]);
  });

  afterAll(async () => {
    await browser?.close();
    await system?.stop();
  });

  it('shows the failed event’s step and reason', async () => {
    const watched = await openWatched(browser, `${system.baseUrl}/`);
    try {
      const { page } = watched;
      await page.waitForFunction(() => document.querySelectorAll('#project option').length > 1);
      await page.click('#preview');
      const error = page.locator('#error');
      await error.waitFor({ state: 'visible', timeout: 60_000 });
      expect(await error.textContent()).toMatch(/^Preview failed at create-machine: .*injected fault: machine create for session [0-9a-f-]{36} failed/);
      expect(await page.locator('#status').getAttribute('data-status')).toBe('error');
      expect(await page.locator('#steps li[data-step="create-machine"]').getAttribute('data-state')).toBe('failed');
      expect(await page.locator('#steps li[data-step="ensure-project"]').getAttribute('data-state')).toBe('done');
      expect(await page.locator('#frame-box').isHidden()).toBe(true);
    } finally {
      await watched.close();
    }
  });
});
