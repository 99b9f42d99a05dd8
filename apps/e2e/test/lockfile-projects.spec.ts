/**
 * A project with a pnpm lockfile, previewed end to end: the install step
 * installs what pnpm-lock.yaml says (pnpm's symlinked node_modules, renamed
 * into the dependency cache and shown read-only to the machine), the machine
 * runs the project's own Vite 7 from it, and the page runs the locked nanoid.
 */
import type { Browser } from 'playwright-core';
import type { SessionEvent } from '@velocity/contracts';
import { launchBrowser, openWatched, until } from '../src/browser';
import { uploadProject, fixtureProjectFiles, startTestRegistry, type RunningRegistry } from '@velocity/testing';
import { eventsUntilTerminal, postSession, startSystem, type RunningSystem } from '../src/system';

jest.setTimeout(240_000);

describe('a project with pnpm-lock.yaml', () => {
  let registry: RunningRegistry;
  let system: RunningSystem;
  let browser: Browser;

  beforeAll(async () => {
    registry = await startTestRegistry();
    [system, browser] = await Promise.all([startSystem({ NPM_REGISTRY_URL: registry.url }), launchBrowser()]);
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await system?.stop();
    await registry?.stop();
  });

  it('installs with pnpm, is ready, and its page runs the locked dependency', async () => {
    const projectId = await uploadProject(system.baseUrl, 'pnpm lockfile', 'vanilla-ts', await fixtureProjectFiles('pnpm-lockfile'));
    const created = await postSession(system.baseUrl, { projectId });
    expect(created.status).toBe(202);
    const { events } = await eventsUntilTerminal(system.baseUrl, created.body.sessionId, 200_000);
    const last = events.at(-1)!;
    if (last.type !== 'ready') throw new Error(`session ended with ${JSON.stringify(last)}\n${system.output.provisioner.slice(-30).join('\n')}`);
    const done = events.find((e): e is Extract<SessionEvent, { type: 'progress' }> => e.type === 'progress' && e.step === 'install-dependencies' && e.state === 'done');
    expect(done).toMatchObject({ cached: false });
    expect((done as { packages: number }).packages).toBeGreaterThan(5);

    const watched = await openWatched(browser, last.previewUrl);
    try {
      await until('nanoid to write an id', async () => /^[\w-]{10}$/.test((await watched.page.locator('#id').textContent()) ?? ''));
      expect(watched.failures).toEqual([]);
      expect(watched.errors).toEqual([]);
    } finally {
      await watched.close();
    }
  });
});
