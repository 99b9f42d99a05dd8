/**
 * The whole Fly.io path, with doubles only for what cannot run here: the api,
 * provisioner and cleanup (real processes, MACHINE_PROVIDER=fly) create machines
 * through a Machines API double that runs each as a real preview-container
 * process on IPv6 loopback, with Fly's environment and real service checks;
 * previews go through a proxy double that routes and follows `fly-replay` as
 * Fly's proxy does. The api is never on a preview's path.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { repoRootOf } from '@velocity/runtime';
import { templateFiles } from '@velocity/contracts';
import { FlyApiDouble, FlyProxyDouble, previewContainerRunner, rawRequest, upgradeHead } from '@velocity/testing';
import { clickCounter, counterText, createProject, launchBrowser, openWatched, putFile, startPreview, waitForHeading, type WatchedPage } from '../src/browser';
import { startSystem, type RunningSystem } from '../src/system';

jest.setTimeout(120_000);

const APP = 'vp-previews-e2e';
const HEADING = 'Hello from Velocity Preview';

describe('on Fly.io: Machines API, machines, proxy and fly-replay, end to end', () => {
  let api: FlyApiDouble;
  let proxy: FlyProxyDouble;
  let system: RunningSystem;
  let browser: Browser;
  let workRoot: string;
  const pages: WatchedPage[] = [];
  let projectId: string;
  const sessions: { sessionId: string; previewUrl: string }[] = [];

  beforeAll(async () => {
    workRoot = mkdtempSync(join(tmpdir(), 'vp-fly-machines-'));
    api = await FlyApiDouble.start({
      apps: [APP],
      runMachine: previewContainerRunner({ entry: join(repoRootOf(__dirname), 'dist/apps/preview-container/src/main.js'), workRoot }),
      checkIntervalScale: 0.1,
    });
    proxy = await FlyProxyDouble.start({ api, app: APP });
    [system, browser] = await Promise.all([
      startSystem({
        MACHINE_PROVIDER: 'fly',
        FLY_API_URL: api.url,
        FLY_API_TOKEN: api.token,
        FLY_APP_NAME: APP,
        FLY_IMAGE: `registry.fly.io/${APP}:test`,
        // The preview app's wildcard host: each preview is <routeId>.localhost:<proxy port>, which resolves to loopback.
        PREVIEW_DOMAIN: `localhost:${proxy.port}`,
      }),
      launchBrowser(),
    ]);
    const created = await createProject(system.baseUrl, 'fly e2e', 'react');
    expect(created.status).toBe(201);
    projectId = created.body.id;
    // Two sessions, so the app has two machines and the proxy's picks miss half the time.
    sessions.push(...(await Promise.all([startPreview(system.baseUrl, projectId, 90_000), startPreview(system.baseUrl, projectId, 90_000)])));
  }, 120_000);

  afterAll(async () => {
    await Promise.allSettled(pages.map((p) => p.close()));
    await browser?.close();
    await system?.stop();
    await proxy?.close();
    await api?.close();
    if (workRoot) rmSync(workRoot, { recursive: true, force: true });
  });

  const machineOf = (sessionId: string) => api.machines(APP).find((m) => m.config.metadata?.session_id === sessionId && m.state !== 'destroyed');

  it('made each session a machine through the Machines API, with a service check, and verified it through the proxy before ready', () => {
    for (const { sessionId, previewUrl } of sessions) {
      expect(previewUrl).toBe(`http://${sessionId}.localhost:${proxy.port}/`);
      const machine = machineOf(sessionId)!;
      expect(machine.state).toBe('started');
      expect(machine.config.services[0].checks).toEqual([expect.objectContaining({ type: 'http', path: '/serving' })]);
      expect(machine.config.env.ROUTES_TOKEN).toEqual(expect.any(String));
      // The provisioner's verification came through the proxy, to this session's machine.
      expect(proxy.requests.some((r) => r.host.startsWith(`${sessionId}.`) && r.machineId === machine.id)).toBe(true);
    }
    expect(api.requestsTo('POST', `/apps/${APP}/machines`)).toHaveLength(2);
  });

  it("replays a request that lands on the other session's machine to the right one", async () => {
    const [a, b] = sessions;
    const [machineA, machineB] = [machineOf(a.sessionId)!, machineOf(b.sessionId)!];
    const before = proxy.requests.length;
    // Pinned to B's machine, as Fly's proxy may pick it: B answers fly-replay, and the proxy replays to A's.
    const res = await fetch(a.previewUrl, { headers: { 'fly-force-instance-id': machineB.id } });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('/@vite/client');
    expect(res.headers.get('fly-replay')).toBeNull();
    expect(proxy.requests.slice(before)).toEqual([
      expect.objectContaining({ machineId: machineB.id }),
      expect.objectContaining({ machineId: machineA.id, replayedFrom: machineB.id }),
    ]);

    // A websocket upgrade the same way: B answers it with fly-replay (not upgraded), and A's Vite takes it.
    const upgradesBefore = proxy.requests.length;
    const head = await upgradeHead({ port: proxy.port }, `${a.sessionId}.localhost:${proxy.port}`, { headers: { 'fly-force-instance-id': machineB.id }, timeoutMs: 10_000 });
    expect(head).toMatch(/^HTTP\/1\.1 101 /);
    expect(head).not.toMatch(/fly-replay/i);
    expect(proxy.requests.slice(upgradesBefore)).toEqual([
      expect.objectContaining({ machineId: machineB.id }),
      expect.objectContaining({ machineId: machineA.id, replayedFrom: machineB.id }),
    ]);
  });

  it('serves the page in Chromium through the proxy, with HMR over a websocket the proxy carries, state kept (React Fast Refresh)', async () => {
    const [a] = sessions;
    const watched = await openWatched(browser, a.previewUrl);
    pages.push(watched);
    await waitForHeading(watched.page, HEADING);
    expect(await watched.page.evaluate(() => typeof (window as unknown as { $RefreshReg$?: unknown }).$RefreshReg$)).toBe('function');
    await clickCounter(watched.page, 2);
    expect(await counterText(watched.page)).toBe('count is 2');
    const app = templateFiles('react').find((f) => f.path === 'src/App.jsx')!.content;
    expect((await putFile(system.baseUrl, projectId, 'src/App.jsx', app.replace(HEADING, 'Edited on Fly'))).status).toBe(200);
    await waitForHeading(watched.page, 'Edited on Fly', 20_000);
    expect(await counterText(watched.page)).toBe('count is 2');
    expect(watched.reloads).toBe(0);
    expect(watched.websockets.some((ws) => ws.url().startsWith(`ws://${a.sessionId}.localhost:${proxy.port}/`))).toBe(true);
    expect(watched.hmrMessages.some((m) => m.type === 'update')).toBe(true);
    expect(watched.errors).toEqual([]);
  });

  it('the api serves no preview: a preview Host sent to it is misdirected (421)', async () => {
    const res = await rawRequest(system.baseUrl, 'GET', '/', { headers: { host: `${sessions[0].sessionId}.localhost:${proxy.port}` } });
    expect(res).toMatchObject({ status: 421, body: { field: 'host' } });
  });

  it('ending a session destroys its machine; its preview then answers 410 from the other machine, not a replay to nothing', async () => {
    const [, b] = sessions;
    const machineB = machineOf(b.sessionId)!;
    const ended = await fetch(`${system.baseUrl}/v1/sessions/${b.sessionId}`, { method: 'DELETE' });
    expect(ended.status).toBeLessThan(300);
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && api.machines(APP).find((m) => m.id === machineB.id)?.state !== 'destroyed') await new Promise((r) => setTimeout(r, 100));
    expect(api.machines(APP).find((m) => m.id === machineB.id)?.state).toBe('destroyed');
    // A machine that looked B's route up keeps the answer a few seconds (fly-replay.ts); then every machine says 410.
    const statuses: number[] = [];
    const until = Date.now() + 20_000;
    while (Date.now() < until && statuses.at(-1) !== 410) {
      statuses.push((await fetch(b.previewUrl)).status);
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(statuses.at(-1)).toBe(410);
    expect(statuses).not.toContain(200);
  });
});
