import { createServer, type Server } from 'node:http';
import { FlyReplay } from '../src/fly-replay';

/** The lookup against a real HTTP server that answers as the api's GET /v1/routes/:id does. */
describe('FlyReplay', () => {
  const machines: Record<string, number | string> = { 'a0000000-0000-4000-8000-000000000001': '3d8d9e1c5e7e18', 'a0000000-0000-4000-8000-000000000002': 410 };
  /** Set: the api refuses the asking machine's own token, its session having ended. */
  let ownSessionEnded = false;
  let server: Server;
  let base: string;
  let requests = 0;
  let lastAuthorization: string | undefined;

  beforeAll(async () => {
    server = createServer((req, res) => {
      requests++;
      lastAuthorization = req.headers.authorization;
      const id = decodeURIComponent(req.url!.split('/').pop()!);
      const found = machines[id];
      const json = { 'content-type': 'application/json' };
      if (ownSessionEnded) return res.writeHead(410, json).end(JSON.stringify({ statusCode: 410, error: 'Gone', field: 'authorization' }));
      if (typeof found === 'string') return res.writeHead(200, json).end(JSON.stringify({ routeId: id, machineId: found }));
      res.writeHead(found ?? 404, json).end(JSON.stringify({ statusCode: found ?? 404, field: 'routeId' }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}/v1/routes`;
  });

  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('is off outside Fly (no FLY_MACHINE_ID)', () => {
    expect(FlyReplay.fromEnv({}, 'http://api.internal:3000/v1/machines/x/files')).toBeNull();
    expect(FlyReplay.fromEnv({ FLY_MACHINE_ID: 'abc' }, 'http://api.internal:3000/v1/machines/x/files')).toBeInstanceOf(FlyReplay);
  });

  it('answers the machine of another session, looked up once', async () => {
    const replay = new FlyReplay(base);
    requests = 0;
    expect(await replay.resolve('a0000000-0000-4000-8000-000000000001')).toEqual({ kind: 'replay', header: 'instance=3d8d9e1c5e7e18' });
    expect(await replay.resolve('a0000000-0000-4000-8000-000000000001')).toEqual({ kind: 'replay', header: 'instance=3d8d9e1c5e7e18' });
    expect(requests).toBe(1);
  });

  it('sends its machine token (the api answers route lookups to machines only)', async () => {
    const replay = FlyReplay.fromEnv({ FLY_MACHINE_ID: 'abc', ROUTES_URL: base, MACHINE_TOKEN: 'the.token' }, 'http://api.internal:3000/v1/machines/x/files')!;
    await replay.resolve('a0000000-0000-4000-8000-000000000002');
    expect(lastAuthorization).toBe('Bearer the.token');
  });

  it('says gone for an ended session and unknown for one without a machine', async () => {
    const replay = new FlyReplay(base);
    expect(await replay.resolve('a0000000-0000-4000-8000-000000000002')).toEqual({ kind: 'gone' });
    expect(await replay.resolve('a0000000-0000-4000-8000-000000000009')).toEqual({ kind: 'unknown' });
  });

  it("does not call a live session gone when the api refuses this machine's own token (its session has ended)", async () => {
    const replay = new FlyReplay(base);
    ownSessionEnded = true;
    try {
      expect(await replay.resolve('a0000000-0000-4000-8000-000000000001')).toEqual({ kind: 'unknown' });
    } finally {
      ownSessionEnded = false;
    }
  });
});
