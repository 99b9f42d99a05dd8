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

  describe('on a clock', () => {
    // Jest's clock drives the interval and Date.now; the heartbeats are real requests (sockets and
    // the microtasks behind them keep running: only the timers and Date are faked).
    beforeEach(() => jest.useFakeTimers({ now: 1_000_000, doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] }));
    afterEach(() => jest.useRealTimers());

    /** A reporter whose `tick()` moves the clock one interval on and waits for the heartbeats its timer sent. */
    const reporterOnClock = () => {
      const reporter = createActivityReporter({ url: apiUrl, token: 'tok', everyMs: 100, logger });
      const timerFlushes = jest.spyOn(reporter, 'flush');
      const tick = async () => {
        const before = timerFlushes.mock.results.length;
        jest.advanceTimersByTime(100);
        await Promise.all(timerFlushes.mock.results.slice(before).map((result) => result.value));
      };
      return { reporter, tick };
    };

    it('an open connection is activity until it closes: one heartbeat per interval, stamped with its time', async () => {
      received.length = 0;
      const { reporter, tick } = reporterOnClock();
      reporter.connectionOpened();
      reporter.start();
      for (let i = 0; i < 4; i++) await tick();
      jest.advanceTimersByTime(50);
      reporter.connectionClosed();
      expect(received.map((r) => r.body.lastActivityAt)).toEqual([1_000_100, 1_000_200, 1_000_300, 1_000_400].map((ms) => new Date(ms).toISOString()));
      // The close itself is the last activity: reported once, then nothing.
      await tick();
      await tick();
      expect(received.map((r) => r.body.lastActivityAt).slice(4)).toEqual([new Date(1_000_450).toISOString()]);
      reporter.stop();
    });

    it('a 409 (not active yet) does not stop the reports, a 410 (ended) does', async () => {
      received.length = 0;
      const { reporter, tick } = reporterOnClock();
      reporter.start();
      try {
        apiStatus = 409;
        reporter.touch();
        await tick();
        // Refused: the same activity is offered again at the next interval.
        await tick();
        expect(received).toHaveLength(2);

        apiStatus = 410;
        await tick();
        expect(received).toHaveLength(3);
        reporter.touch();
        await tick();
        await tick();
        expect(received).toHaveLength(3);
      } finally {
        reporter.stop();
        apiStatus = 200;
      }
    });
  });
});
