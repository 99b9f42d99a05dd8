import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { createLogger } from '@velocity/runtime';
import { activitySettings, createActivityReporter } from '../src/activity';
import { createContainerServer, type ContainerServer } from '../src/server';

/**
 * The container's activity reporting: requests for the preview and open
 * websockets count, /health does not; heartbeats go at most every `everyMs`,
 * only when there was activity, to a real HTTP endpoint standing in for the api.
 */
describe('activity reporter', () => {
  const sessionId = randomUUID();
  const received: { authorization?: string; body: { lastActivityAt: string } }[] = [];
  let apiStatus = 200;
  let api: Server;
  let apiUrl: string;
  let container: ContainerServer;
  let containerPort: number;
  const logger = createLogger('activity-test', 'silent');

  beforeAll(async () => {
    api = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        received.push({ authorization: req.headers.authorization, body: JSON.parse(body) });
        res.writeHead(apiStatus, { 'content-type': 'application/json' });
        res.end(apiStatus >= 400 ? JSON.stringify({ statusCode: apiStatus, status: apiStatus === 410 ? 'ended' : 'starting' }) : '{}');
      });
    });
    await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
    apiUrl = `http://127.0.0.1:${(api.address() as AddressInfo).port}/v1/machines/${sessionId}/activity`;
  });

  afterAll(async () => {
    await container?.close();
    await new Promise((r) => api.close(r));
  });

  /** A request to the machine: on its preview origin, or (no `host`) as the provider asks it. */
  const get = (path: string, host?: string) =>
    new Promise<number>((resolve, reject) => {
      request({ host: '127.0.0.1', port: containerPort, path, headers: host ? { host } : {} }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      })
        .on('error', reject)
        .end();
    });

  it('derives its URL from FILES_URL and reads ACTIVITY_REPORT_EVERY_MS', () => {
    expect(activitySettings({}, `http://api:3000/v1/machines/${sessionId}/files`)).toEqual({
      url: `http://api:3000/v1/machines/${sessionId}/activity`,
      everyMs: 30_000,
    });
    expect(activitySettings({ ACTIVITY_REPORT_EVERY_MS: '500', ACTIVITY_URL: 'http://x/a' }, 'http://api/files')).toEqual({ url: 'http://x/a', everyMs: 500 });
    expect(() => activitySettings({ ACTIVITY_REPORT_EVERY_MS: 'soon' }, 'http://api/files')).toThrow(/ACTIVITY_REPORT_EVERY_MS/);
    expect(activitySettings({}, 'http://unix:/run/vp-api/api.sock:/v1/machines/x/files').url).toBe('http://unix:/run/vp-api/api.sock:/v1/machines/x/activity');
  });

  it('reports preview requests (not /health) once per interval, with the machine token', async () => {
    const reporter = createActivityReporter({ url: apiUrl, token: 'tok', everyMs: 60_000, logger });
    container = createContainerServer({ sessionId, routeId: sessionId, logger, activity: reporter });
    containerPort = await container.listen(0, '127.0.0.1');

    await get('/health');
    expect(reporter.lastActivityAt).toBeNull();
    expect(await reporter.flush()).toBe(false);
    expect(received).toHaveLength(0);

    const before = Date.now();
    await get('/', `${sessionId}.localhost`);
    await get('/src/main.tsx', `${sessionId}.localhost`);
    expect(reporter.lastActivityAt).toBeGreaterThanOrEqual(before);
    expect(await reporter.flush()).toBe(true);
    expect(received).toEqual([{ authorization: 'Bearer tok', body: { lastActivityAt: new Date(reporter.lastActivityAt!).toISOString() } }]);
    // Nothing new since: no second heartbeat.
    expect(await reporter.flush()).toBe(false);
    expect(received).toHaveLength(1);
  });

  it('an open connection is activity until it closes; a 409 (not active yet) does not stop the reports, a 410 (ended) does', async () => {
    received.length = 0;
    const reporter = createActivityReporter({ url: apiUrl, token: 'tok', everyMs: 100, logger });
    reporter.connectionOpened();
    reporter.start();
    await new Promise((r) => setTimeout(r, 450));
    reporter.connectionClosed();
    const whileOpen = received.length;
    expect(whileOpen).toBeGreaterThanOrEqual(3);
    expect(whileOpen).toBeLessThanOrEqual(5);
    const times = received.map((r) => Date.parse(r.body.lastActivityAt));
    expect(times).toEqual([...times].sort((a, b) => a - b));

    apiStatus = 409;
    reporter.touch();
    await new Promise((r) => setTimeout(r, 250));
    const afterConflict = received.length;
    reporter.touch();
    await new Promise((r) => setTimeout(r, 250));
    expect(received.length).toBeGreaterThan(afterConflict);

    apiStatus = 410;
    reporter.touch();
    await new Promise((r) => setTimeout(r, 250));
    const afterEnd = received.length;
    reporter.touch();
    await new Promise((r) => setTimeout(r, 250));
    expect(received.length).toBe(afterEnd);
    reporter.stop();
    apiStatus = 200;
  });
});
