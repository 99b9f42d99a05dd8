/**
 * The warm pool for projects with dependencies of their own (DEPENDENCY_POOL):
 * after a session of the generated app installs its set, the pool starts a
 * machine on that set and the app's config files, with the packages its
 * sources import pre-bundled; the next session of the project claims it and
 * works in Chromium as a cold one does. A project whose config differs does
 * not get that machine, and a machine whose profile cannot start is given up.
 */
import type { Browser } from 'playwright-core';
import { Redis } from 'ioredis';
import { WarmPool } from '@velocity/machines';
import { loadConfig, type SessionEvent } from '@velocity/contracts';
import { launchBrowser, openWatched, until, type WatchedPage } from '../src/browser';
import { putProjectFile, uploadProject, fixtureProjectFiles, startTestRegistry, type RunningRegistry } from '@velocity/testing';
import { eventsUntilTerminal, postSession, startSystem, type RunningSystem } from '../src/system';

jest.setTimeout(240_000);

type Ready = Extract<SessionEvent, { type: 'ready' }>;

describe('warm pool per dependency set', () => {
  let registry: RunningRegistry;
  let system: RunningSystem;
  let browser: Browser;
  let redis: Redis;
  let pool: WarmPool;
  const pages: WatchedPage[] = [];

  async function preview(projectId: string): Promise<{ sessionId: string; ready: Ready; events: SessionEvent[] }> {
    const created = await postSession(system.baseUrl, { projectId });
    expect(created.status).toBe(202);
    const { events } = await eventsUntilTerminal(system.baseUrl, created.body.sessionId, 200_000);
    const last = events.at(-1)!;
    if (last.type !== 'ready') throw new Error(`session ended with ${JSON.stringify(last)}\n${system.output.provisioner.slice(-30).join('\n')}`);
    return { sessionId: created.body.sessionId, ready: last, events };
  }

  const profileMachines = async () => (await pool.members()).filter((m) => m.profile && m.state === 'ready');

  beforeAll(async () => {
    registry = await startTestRegistry();
    [system, browser] = await Promise.all([
      startSystem({ NPM_REGISTRY_URL: registry.url, DEPENDENCY_POOL: '2x1', POOL_REFILL_EVERY_MS: '500' }),
      launchBrowser(),
    ]);
    const config = loadConfig(system.env);
    redis = new Redis(config.REDIS_URL);
    pool = new WarmPool(redis, config.QUEUE_PREFIX);
  }, 120_000);

  afterAll(async () => {
    await Promise.allSettled(pages.map((p) => p.close()));
    await browser?.close();
    redis?.disconnect();
    await system?.stop();
    await registry?.stop();
  });

  let appId: string;

  it('a second session of the app claims a machine started on its dependency set, which serves it in Chromium', async () => {
    appId = await uploadProject(system.baseUrl, 'generated app', 'react', await fixtureProjectFiles('generated-app'));
    const first = await preview(appId);
    expect(first.ready.pooled).toBe(false);
    await until('a pooled machine on the app’s dependency set', async () => (await profileMachines()).length === 1, 120_000);
    const [pooled] = await profileMachines();

    const second = await preview(appId);
    expect(second.ready.pooled).toBe(true);
    expect(new URL(second.ready.previewUrl).hostname.startsWith(`${pooled.routeId}.`)).toBe(true);
    expect(second.events.find((e) => e.type === 'progress' && e.step === 'install-dependencies' && e.state === 'done')).toMatchObject({ cached: true });
    expect((await pool.members()).map((m) => m.machineId)).not.toContain(pooled.machineId);

    const watched = await openWatched(browser, second.ready.previewUrl);
    pages.push(watched);
    const { page } = watched;
    await page.getByTestId('heading-home').waitFor();
    expect(await page.getByTestId('heading-home').textContent()).toBe('Grow your tasks');
    // Its packages were bundled before the claim: nothing new for Vite to bundle, so no full reload follows (the marker stays).
    await page.evaluate(() => ((window as unknown as { __vpMarker?: string }).__vpMarker = 'same page'));
    expect(await page.locator('section').first().evaluate((el) => getComputedStyle(el).backgroundImage)).toMatch(/linear-gradient/);
    expect(await page.locator('nav svg.lucide').count()).toBeGreaterThanOrEqual(5);
    await page.getByTestId('nav-items').click();
    await page.getByTestId('heading-items').waitFor();
    await page.getByTestId('nav-home').click();
    await page.getByTestId('counter-button').click();
    await until('the count to read 1', async () => (await page.getByTestId('counter-value').textContent()) === '1');

    // A hot edit keeps the page and its state.
    const hero = (await fixtureProjectFiles('generated-app')).find((f) => f.path === 'src/components/Hero.tsx')!;
    const edited = hero.content.toString('utf8').replace("'Grow your tasks'", "'Grow your tasks, from the pool'");
    expect((await putProjectFile(system.baseUrl, appId, { path: hero.path, content: Buffer.from(edited) })).status).toBe(200);
    await until('the edited heading', async () => (await page.getByTestId('heading-home').textContent()) === 'Grow your tasks, from the pool', 20_000);
    expect(await page.evaluate(() => (window as unknown as { __vpMarker?: string }).__vpMarker)).toBe('same page');
    expect(await page.getByTestId('counter-value').textContent()).toBe('1');
    expect(watched.failures).toEqual([]);
    expect(watched.errors).toEqual([]);
  });

  it('a project with the same dependencies but another vite.config starts cold, and gets a pool of its own', async () => {
    await until('the pool refilled for the app', async () => (await profileMachines()).length === 1, 120_000);
    const [appMachine] = await profileMachines();
    const files = await fixtureProjectFiles('generated-app');
    const config = files.find((f) => f.path === 'vite.config.ts')!;
    const otherConfig = { ...config, content: Buffer.from(`${config.content.toString('utf8')}\n// another project's config\n`) };
    const otherId = await uploadProject(system.baseUrl, 'same set, other config', 'react', files.map((f) => (f.path === config.path ? otherConfig : f)));

    const other = await preview(otherId);
    expect(other.ready.pooled).toBe(false);
    expect((await pool.members()).map((m) => m.machineId)).toContain(appMachine.machineId);
    await until('a pooled machine for each profile', async () => (await profileMachines()).length === 2, 120_000);
  });

  it('gives up a profile whose machine cannot start, and keeps serving its sessions cold', async () => {
    const files = await fixtureProjectFiles('generated-app');
    const broken = files.map((f) => (f.path === 'vite.config.ts' ? { ...f, content: Buffer.from(`import './config/local-setup';\n${f.content.toString('utf8')}`) } : f));
    const id = await uploadProject(system.baseUrl, 'config importing a source file', 'react', [
      ...broken,
      { path: 'config/local-setup.ts', content: Buffer.from('export const setup = true;\n') },
    ]);
    const session = await preview(id);
    expect(session.ready.pooled).toBe(false);
    // Its pooled machine starts without config/local-setup.ts (not a start file), fails, and the profile is forgotten.
    await until('the failed profile given up', async () => system.output.provisioner.some((line) => line.includes('pooled machine did not start')), 120_000);
    const profiles = await pool.recentProfiles(10, 3_600_000);
    expect(profiles).toHaveLength(2);
    expect(await preview(id).then((s) => s.ready.pooled)).toBe(false);
  });
});
