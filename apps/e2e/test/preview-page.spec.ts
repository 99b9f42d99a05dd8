/**
 * The preview page at `/`, in a real Chromium against the real system (one
 * system and one browser for the file): the user's projects listed from the api,
 * Preview on the demo project with the steps and their times, the app in the
 * frame, extend; Preview again stops the first session (one live per page);
 * Stop and failures show why the session ended in place of the frame; the
 * build's errors are listed beside the frame as files change; errors are shown,
 * not swallowed, and a normal run logs no console error.
 */
import { randomUUID } from 'node:crypto';
import type { Browser, Page } from 'playwright-core';
import { DEMO_PROJECT_ID, PROVISION_STEPS, templateFiles } from '@velocity/contracts';
import { createProject, launchBrowser, openWatched, putFile, until, type WatchedPage } from '../src/browser';
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
  /** Waits for the page to show `status`; on a timeout, says what it showed instead and what failed. */
  const untilStatus = (tab: WatchedPage, status: string, timeoutMs: number) =>
    until(`the page to show ${status}`, async () => (await statusOf(tab.page)) === status, timeoutMs).catch(async (err: Error) => {
      const { page } = tab;
      const shown = await page.locator('#status-text').textContent().catch(() => null);
      const steps = await page.locator('#steps li').evaluateAll((items) => items.map((li) => `${li.getAttribute('data-step')} ${li.getAttribute('data-state')}`)).catch(() => []);
      const failures = [...tab.failures, ...tab.errors].join('; ') || 'none';
      throw new Error(`${err.message}; it showed ${JSON.stringify(shown)} (${await statusOf(page).catch(() => null)}), steps: ${steps.join(', ') || 'none'}; failed requests and errors: ${failures}`);
    });
  const sessionRow = async (id: string) => (await fetch(`${system.baseUrl}/v1/sessions/${id}`)).json();

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

  it('lists the user’s projects from GET /v1/projects (a page at a time), the demo project too, with no console error', async () => {
    // More than a page (20): the list shows the first page and a control for the next.
    const made: { id: string; name: string }[] = [];
    for (let i = 0; i < 22; i++) {
      const created = await createProject(system.baseUrl, `page project ${i}`, i % 2 ? 'vue' : 'react');
      expect(created.status).toBe(201);
      made.push(created.body);
    }
    watched = await openWatched(browser, `${system.baseUrl}/`);
    const { page } = watched;
    const listed = () => page.locator('#project-list option').evaluateAll((options) => options.map((o) => ({ value: (o as HTMLOptionElement).value, text: o.textContent })));
    await page.waitForFunction(() => document.querySelectorAll('#project-list option').length > 0);
    // The demo project is offered and selected; the newest projects come first.
    expect(await page.locator('#demo-list option').evaluateAll((o) => o.map((x) => (x as HTMLOptionElement).value))).toEqual([DEMO_PROJECT_ID]);
    expect(await page.locator('#project').inputValue()).toBe(DEMO_PROJECT_ID);
    const first = await listed();
    expect(first).toHaveLength(20);
    const newest = [...made].reverse();
    expect(first.map((o) => o.value)).toEqual(newest.slice(0, 20).map((p) => p.id));
    expect(first[0].text).toBe(`page project 21 (vue) · ${made[21].id.slice(0, 8)}`);
    expect(first.map((o) => o.value)).not.toContain(DEMO_PROJECT_ID);

    // "More projects" appends the next page; on the last page it goes away.
    const more = page.locator('#more-projects');
    expect(await more.isVisible()).toBe(true);
    expect(await more.textContent()).toBe('More projects');
    await more.click();
    await until('the next page', async () => (await listed()).length > 20);
    expect((await listed()).map((o) => o.value).slice(0, 22)).toEqual(newest.map((p) => p.id));
    await until('the more control to go', () => more.isHidden());

    // Nothing is kept in localStorage any more.
    expect(await page.evaluate(() => Object.keys(localStorage))).toEqual([]);
    expect(watched.errors).toEqual([]);
    expect(watched.failures).toEqual([]);
  });

  it('Preview on the demo project: steps with times, the app in the frame, extend; Preview again stops the first; Stop shows why it ended', async () => {
    watched = await openWatched(browser, `${system.baseUrl}/`);
    const { page } = watched;
    await page.waitForFunction(() => document.querySelectorAll('#project option').length > 1);
    expect(await page.locator('#project').inputValue()).toBe(DEMO_PROJECT_ID);

    await page.click('#preview');
    await page.locator('#session').waitFor({ state: 'visible' });
    // A session being started can be stopped already.
    expect(await page.locator('#stop').isEnabled()).toBe(true);

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
    await until('the page to show active', async () => (await statusOf(page)) === 'active');
    expect(await page.locator('#status-text').textContent()).toMatch(/^Ready: the preview is live/);
    expect(await page.locator('#status-text').getAttribute('aria-live')).toBe('polite');

    // The app, in the frame, from the URL the page shows; the build state beside it.
    const previewUrl = (await page.locator('#preview-url').getAttribute('href'))!;
    const firstId = (await page.locator('#session-id').textContent())!;
    expect(previewUrl).toBe(system.previewUrlOf(firstId));
    const frame = page.frameLocator('#frame');
    await frame.locator('button', { hasText: 'count is 0' }).waitFor({ timeout: 30_000 });
    await frame.locator('button', { hasText: 'count is' }).click();
    await frame.locator('button', { hasText: 'count is 1' }).waitFor();
    expect(await page.locator('#build-state').getAttribute('data-state')).toBe('ok');
    expect(await page.locator('#diagnostic-list li').count()).toBe(0);

    // Extend moves the expiry shown (and the row's).
    const before = (await page.locator('#expires').getAttribute('datetime'))!;
    const beforeText = await page.locator('#expires').textContent();
    await page.click('#extend');
    await until('the expiry to move', async () => (await page.locator('#expires').getAttribute('datetime')) !== before);
    const after = (await page.locator('#expires').getAttribute('datetime'))!;
    expect(Date.parse(after) - Date.parse(before)).toBe(300_000);
    expect(await page.locator('#expires').textContent()).not.toBe(beforeText);
    expect((await sessionRow(firstId)).expiresAt).toBe(after);

    // Preview again: the first session is stopped, a second takes its place; one is live.
    await page.click('#preview');
    await until('a second session', async () => ((await page.locator('#session-id').textContent()) ?? firstId) !== firstId, 30_000);
    const secondId = (await page.locator('#session-id').textContent())!;
    await until('the first session to end', async () => (await sessionRow(firstId)).status === 'ended', 30_000);
    await until('the page to show the second active', async () => (await statusOf(page)) === 'active', 60_000);
    expect((await sessionRow(secondId)).status).toBe('active');
    expect((await sessionRow(firstId)).status).toBe('ended');
    expect(await page.locator('#frame').count()).toBe(1);
    expect(await page.locator('#frame').getAttribute('src')).toBe(system.previewUrlOf(secondId));
    await page.frameLocator('#frame').locator('button', { hasText: 'count is 0' }).waitFor({ timeout: 30_000 });

    // Stop: the frame goes, the ended state says why, and no JSON anywhere on the page.
    await page.click('#stop');
    await untilStatus(watched, 'ended', 30_000);
    expect(await page.locator('#frame').count()).toBe(0);
    expect(await page.locator('#frame-box').isHidden()).toBe(true);
    expect(await page.locator('#ended').isVisible()).toBe(true);
    expect(await page.locator('#ended-title').textContent()).toBe('Preview ended');
    expect(await page.locator('#ended-reason').textContent()).toBe('It was stopped.');
    expect(await page.locator('#status-text').textContent()).toBe('Preview ended. It was stopped.');
    const text = await page.locator('body').innerText();
    expect(text).not.toMatch(/[{}]|"error"|Session ended/);
    expect((await sessionRow(secondId)).status).toBe('ended');
    expect(await page.locator('#stop').isDisabled()).toBe(true);
    expect(await page.locator('#extend').isDisabled()).toBe(true);
    expect(await page.locator('#error').isHidden()).toBe(true);
    // Buttons are named by their text.
    for (const id of ['#preview', '#stop', '#extend']) expect((await page.locator(id).textContent())?.trim()).not.toBe('');
    // Not one console error or failed request in all of it. The only requests cut short may be the
    // sessions' event streams, which the page closes itself: the first's when it let that session go,
    // the second's at its `ended` (when the page closes it before the api does).
    expect(watched.errors).toEqual([]);
    const closedByThePage = [firstId, secondId].map((id) => `GET ${system.baseUrl}/v1/sessions/${id}/events net::ERR_ABORTED`);
    expect(watched.failures.filter((f) => !closedByThePage.includes(f))).toEqual([]);
  });

  it('lists the build errors beside the frame as the project is edited, and clears them when fixed', async () => {
    const project = await createProject(system.baseUrl, 'page diagnostics', 'react');
    expect(project.status).toBe(201);
    const app = templateFiles('react').find((f) => f.path === 'src/App.jsx')!.content.toString();
    watched = await openWatched(browser, `${system.baseUrl}/`);
    const { page } = watched;
    await page.waitForFunction((id) => Array.from(document.querySelectorAll('#project-list option')).some((o) => (o as HTMLOptionElement).value === id), project.body.id);
    await page.selectOption('#project', project.body.id);
    await page.click('#preview');
    await untilStatus(watched, 'active', 60_000);
    await page.frameLocator('#frame').locator('button', { hasText: 'count is 0' }).waitFor({ timeout: 30_000 });
    expect(await page.locator('#build-state').getAttribute('data-state')).toBe('ok');

    // A syntax error on line 8: listed within a few seconds, by file and line.
    expect(await putFile(system.baseUrl, project.body.id, 'src/App.jsx', app.replace('<h1>Hello', '<h1>Hello {'))).toMatchObject({ status: 200 });
    await until('the syntax error to be listed', async () => (await page.locator('#diagnostic-list li').count()) > 0, 5_000);
    const items = await page.locator('#diagnostic-list li').evaluateAll((lis) => lis.map((li) => ({ where: li.querySelector('.where')?.textContent ?? '', text: li.textContent ?? '' })));
    expect(items).toHaveLength(1);
    expect(items[0].where).toMatch(/^src\/App\.jsx:8(:\d+)?$/);
    expect(items[0].text).toMatch(/^src\/App\.jsx:8(:\d+)? — \S/);
    // The headline says what is wrong (not Vite's "Transform failed with 1 error:"); the whole message is under Details.
    expect(items[0].text).not.toMatch(/— Transform failed/);
    expect(await page.locator('#build-state').getAttribute('data-state')).toBe('errors');
    expect(await page.locator('#build-state').textContent()).toBe('1 error');
    // The row says the same.
    expect((await sessionRow((await page.locator('#session-id').textContent())!)).build).toMatchObject({ state: 'errors', diagnostics: [{ file: 'src/App.jsx', line: 8 }] });

    // Fixed: the list is cleared.
    expect(await putFile(system.baseUrl, project.body.id, 'src/App.jsx', app)).toMatchObject({ status: 200 });
    await until('the list to clear', async () => (await page.locator('#diagnostic-list li').count()) === 0, 5_000);
    expect(await page.locator('#build-state').getAttribute('data-state')).toBe('ok');
    expect(await page.locator('#build-state').textContent()).toBe('No errors: the build is clean.');

    await page.click('#stop');
    await untilStatus(watched, 'ended', 30_000);
    expect(await page.locator('#diagnostics').isHidden()).toBe(true);
  });

  it('Stop while the session is still starting cancels it: the page says it was stopped', async () => {
    watched = await openWatched(browser, `${system.baseUrl}/`);
    const { page } = watched;
    await page.waitForFunction(() => document.querySelectorAll('#project option').length > 1);
    await page.click('#preview');
    await page.locator('#session').waitFor({ state: 'visible' });
    const sessionId = (await page.locator('#session-id').textContent())!;
    await page.click('#stop');
    await page.locator('#ended').waitFor({ state: 'visible', timeout: 30_000 });
    // Cancelled while provisioning, or (when it was quicker) ended just after it became ready.
    const reason = await page.locator('#ended-reason').textContent();
    expect(['It was stopped before it was ready.', 'It was stopped.']).toContain(reason);
    expect(await page.locator('#ended-title').textContent()).toBe(reason === 'It was stopped.' ? 'Preview ended' : 'Preview stopped');
    expect(await page.locator('#frame').count()).toBe(0);
    expect(await page.locator('#error').isHidden()).toBe(true);
    await until('the row to end', async () => ['ended', 'error'].includes((await sessionRow(sessionId)).status), 30_000);
    expect(watched.errors).toEqual([]);
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
    await untilStatus(watched, 'active', 60_000);
    expect(await page.locator('#steps li[data-state="done"]').count()).toBe(PROVISION_STEPS.length);
    const sessionId = (await page.locator('#session-id').textContent())!;
    const after = seen.slice(from);
    expect(after.map((r) => new URL(r.url).pathname)).toEqual(expect.arrayContaining(['/v1/sessions', `/v1/sessions/${sessionId}/events`]));
    expect(after.filter((r) => r.authorization !== 'Bearer a-token-for-the-test')).toEqual([]);
    // Kept for this tab only, on the api's origin (previews have origins of their own); never in localStorage.
    expect(await page.evaluate(() => sessionStorage.getItem('velocity-preview.token'))).toBe('a-token-for-the-test');
    expect(await page.evaluate(() => localStorage.getItem('velocity-preview.token'))).toBeNull();
    await page.click('#stop');
    await untilStatus(watched, 'ended', 30_000);
  });

  it('a project made from a template previews too', async () => {
    watched = await openWatched(browser, `${system.baseUrl}/`);
    const { page } = watched;
    await page.waitForFunction(() => document.querySelectorAll('#project option').length > 1);
    await page.selectOption('#project', 'template:vue');
    await page.click('#preview');
    await untilStatus(watched, 'active', 60_000);
    // The new project (POST /v1/projects) is in the list and selected.
    const projectId = await page.locator('#project').inputValue();
    expect(projectId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(await (await fetch(`${system.baseUrl}/v1/projects/${projectId}`)).json()).toMatchObject({ id: projectId, templateType: 'vue' });
    await page.frameLocator('#frame').locator('button', { hasText: 'count is 0' }).waitFor({ timeout: 30_000 });
    await page.click('#stop');
    await untilStatus(watched, 'ended', 30_000);
  });

  it('a session that fails shows its step and reason in place of the frame', async () => {
    // A project whose vite.config throws: its machine cannot start Vite, and the session fails at verify-url.
    const project = await createProject(system.baseUrl, 'broken config', 'vanilla-ts');
    expect(project.status).toBe(201);
    expect(await putFile(system.baseUrl, project.body.id, 'vite.config.js', "throw new Error('this config is broken on purpose');\n")).toMatchObject({ status: 201 });
    watched = await openWatched(browser, `${system.baseUrl}/`);
    const { page } = watched;
    await page.waitForFunction((id) => Array.from(document.querySelectorAll('#project-list option')).some((o) => (o as HTMLOptionElement).value === id), project.body.id);
    await page.selectOption('#project', project.body.id);
    await page.click('#preview');
    await page.locator('#ended').waitFor({ state: 'visible', timeout: 60_000 });
    expect(await page.locator('#ended-title').textContent()).toBe('Preview failed');
    expect(await page.locator('#ended-reason').textContent()).toMatch(/^Step verify-url failed: .*this config is broken on purpose/);
    expect(await page.locator('#status-text').textContent()).toMatch(/^Preview failed\. Step verify-url failed: /);
    expect(await statusOf(page)).toBe('error');
    expect(await page.locator('#steps li[data-step="verify-url"]').getAttribute('data-state')).toBe('failed');
    expect(await page.locator('#steps li[data-step="ensure-project"]').getAttribute('data-state')).toBe('done');
    expect(await page.locator('#frame-box').isHidden()).toBe(true);
    expect(await page.locator('#frame').count()).toBe(0);
    expect(await page.locator('#stop').isDisabled()).toBe(true);
    expect(watched.errors).toEqual([]);
  });
});
