import { createServer, type Server } from 'node:http';
import { FlyReplay } from '../src/fly-replay';

/** The lookup against a real HTTP server that answers as the api's GET /v1/routes/:id does. */
describe('FlyReplay', () => {
  const OWN_MACHINE = '148e2d1a9c0d38';
  const routes: Record<string, number | string> = {
    'a0000000-0000-4000-8000-000000000001': '3d8d9e1c5e7e18',
    'a0000000-0000-4000-8000-000000000002': 410,
    'a0000000-0000-4000-8000-000000000003': OWN_MACHINE,
  };
  let server: Server;
  let base: string;
  let requests = 0;
  let lastAuthorization: string | undefined;

  beforeAll(async () => {
    server = createServer((req, res) => {
      requests++;
      lastAuthorization = req.headers.authorization;
      const id = decodeURIComponent(req.url!.split('/').pop()!);
      const found = routes[id];
      const json = { 'content-type': 'application/json' };
      if (typeof found === 'string') return res.writeHead(200, json).end(JSON.stringify({ routeId: id, machineId: found }));
      res.writeHead(found ?? 404, json).end(JSON.stringify({ statusCode: found ?? 404, field: 'routeId' }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}/v1/routes`;
  });

  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));
  beforeEach(() => {
    requests = 0;
  });

  it('is on only in a Fly machine (FLY_MACHINE_ID) given where and with what to look routes up', () => {
    const fly = { FLY_MACHINE_ID: OWN_MACHINE, ROUTES_URL: base, ROUTES_TOKEN: 'routes.token' };
    expect(FlyReplay.fromEnv(fly)).toBeInstanceOf(FlyReplay);
    expect(FlyReplay.fromEnv({ ...fly, FLY_MACHINE_ID: undefined })).toBeNull();
    expect(FlyReplay.fromEnv({ ...fly, ROUTES_URL: undefined })).toBeNull();
    expect(FlyReplay.fromEnv({ ...fly, ROUTES_TOKEN: undefined })).toBeNull();
  });

  it("answers another route's machine with its routes token, looked up once", async () => {
    const replay = FlyReplay.fromEnv({ FLY_MACHINE_ID: OWN_MACHINE, ROUTES_URL: base, ROUTES_TOKEN: 'routes.token' })!;
    expect(await replay.resolve('a0000000-0000-4000-8000-000000000001')).toEqual({ kind: 'replay', header: 'instance=3d8d9e1c5e7e18' });
    expect(await replay.resolve('a0000000-0000-4000-8000-000000000001')).toEqual({ kind: 'replay', header: 'instance=3d8d9e1c5e7e18' });
    expect(requests).toBe(1);
    expect(lastAuthorization).toBe('Bearer routes.token');
  });

  it('says gone for an ended session and unknown for a route no machine serves', async () => {
    const replay = new FlyReplay(base, 't', OWN_MACHINE);
    expect(await replay.resolve('a0000000-0000-4000-8000-000000000002')).toEqual({ kind: 'gone' });
    expect(await replay.resolve('a0000000-0000-4000-8000-000000000009')).toEqual({ kind: 'unknown' });
  });

  it('never replays to itself, nor a request Fly already replayed (an out-of-date lookup would loop)', async () => {
    const replay = new FlyReplay(base, 't', OWN_MACHINE);
    expect(await replay.resolve('a0000000-0000-4000-8000-000000000003')).toEqual({ kind: 'unknown' });
    expect(await replay.resolve('a0000000-0000-4000-8000-000000000001')).toEqual({ kind: 'replay', header: 'instance=3d8d9e1c5e7e18' });
    const before = requests;
    expect(await replay.resolve('a0000000-0000-4000-8000-000000000001', 'instance=0e2f;state=x')).toEqual({ kind: 'unknown' });
    expect(requests).toBe(before);
    // The stale answer is forgotten: the next request looks the route up again.
    await replay.resolve('a0000000-0000-4000-8000-000000000001');
    expect(requests).toBe(before + 1);
  });
});
