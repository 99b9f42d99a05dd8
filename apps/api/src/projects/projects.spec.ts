import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { request } from 'node:http';
import { createMachineToken, createRedis, FileChangeLog, PostgresSessionStore, type Config } from '@velocity/shared';
import { testConfig } from '../../../../libs/shared/test/test-env';
import { stopProcess } from '../../../../scripts/services';
import { startTestApi } from '../../../../libs/shared/test/test-api';
import { freePort } from '../../../e2e/src/system';

/**
 * The projects api as a real api process (Nest's bullmq module is ESM-only, so it
 * cannot load inside Jest) on the test database and Redis: create and read
 * projects, put and delete files, the path rules and the limits, and the change
 * stream each accepted write lands in.
 */
const LIMITS = { MAX_PROJECT_FILES: 3, MAX_FILE_BYTES: 100, MAX_PROJECT_BYTES: 250 };

describe('projects api', () => {
  let config: Config;
  let api: ChildProcess;
  let base: string;
  const redis = createRedis('redis://127.0.0.1:6379');
  let changes: FileChangeLog;
  let store: PostgresSessionStore;

  beforeAll(async () => {
    const port = await freePort();
    config = testConfig({ ...LIMITS, API_PORT: port });
    ({ child: api, base } = await startTestApi(config));
    changes = new FileChangeLog(redis, config.QUEUE_PREFIX, 60);
    store = new PostgresSessionStore(config.DATABASE_URL, { max: 2 });
  }, 40_000);

  afterAll(async () => {
    if (api) await stopProcess(api);
    await store?.close();
    const keys = await redis.keys(`${config.QUEUE_PREFIX}:*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });

  /** node:http, not fetch: fetch's URL parser would resolve `%2e%2e` segments before sending, and the api must see them. */
  const send = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
    new Promise<{ status: number; body: any }>((resolve, reject) => {
      const payload = body === undefined ? undefined : typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
      const { hostname, port } = new URL(base);
      const req = request({ host: hostname, port, path, method, headers: { 'content-type': 'application/json', ...headers } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined });
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(payload);
    });
  const put = (projectId: string, path: string, content: unknown) => send('PUT', `/v1/projects/${projectId}/files/${path}`, { content });
  const newProject = async (templateType = 'react') => (await send('POST', '/v1/projects', { name: 'spec project', templateType })).body.id as string;

  describe('POST /v1/projects and GET /v1/projects/:id', () => {
    it.each(['react', 'vue', 'svelte', 'vanilla-ts'])('creates a %s project (201) that GET returns', async (templateType) => {
      const created = await send('POST', '/v1/projects', { name: '  My app  ', templateType });
      expect(created.status).toBe(201);
      expect(created.body).toEqual({ id: expect.stringMatching(/^[0-9a-f-]{36}$/), name: 'My app', templateType, createdAt: expect.any(String), updatedAt: expect.any(String) });
      const read = await send('GET', `/v1/projects/${created.body.id}`);
      expect(read).toEqual({ status: 200, body: created.body });
      expect(await send('GET', `/v1/projects/${created.body.id}/files`)).toEqual({ status: 200, body: { files: [] } });
    });

    it('defaults templateType to react', async () => {
      expect((await send('POST', '/v1/projects', { name: 'x' })).body.templateType).toBe('react');
    });

    it.each([
      [{ name: 'x', templateType: 'angular' }, 'templateType', 'must be one of: react, vue, svelte, vanilla-ts'],
      [{ name: 'x', templateType: 7 }, 'templateType', ''],
      [{ templateType: 'react' }, 'name', ''],
      [{ name: '   ' }, 'name', 'must not be empty'],
      [{ name: 'x', owner: 'me' }, 'owner', 'unknown field'],
      ['{"name":', 'body', 'not valid JSON'],
    ])('refuses %j with 400 naming %s', async (body, field, message) => {
      const res = await send('POST', '/v1/projects', body);
      expect(res.status).toBe(400);
      expect(res.body).toMatchObject({ statusCode: 400, error: 'Bad Request', field });
      expect(res.body.message).toContain(message);
    });

    it('answers 404 for an unknown project and 400 for a bad id', async () => {
      const unknown = randomUUID();
      for (const path of [`/v1/projects/${unknown}`, `/v1/projects/${unknown}/files`]) {
        const res = await send('GET', path);
        expect(res.status).toBe(404);
        expect(res.body).toMatchObject({ statusCode: 404, field: 'id', message: `Project ${unknown} does not exist` });
      }
      expect((await put(unknown, 'a.js', 'x')).status).toBe(404);
      expect((await send('DELETE', `/v1/projects/${unknown}/files/a.js`)).status).toBe(404);
      const bad = await send('GET', '/v1/projects/nope');
      expect(bad).toMatchObject({ status: 400, body: { field: 'id' } });
    });
  });

  describe('PUT, DELETE and GET files', () => {
    it('creates (201), replaces (200), lists and deletes (204) files; each change goes to the project stream', async () => {
      const id = await newProject();
      const first = await put(id, 'src/App.jsx', 'export default 1;');
      expect(first).toEqual({ status: 201, body: { path: 'src/App.jsx', bytes: 17, created: true, fileCount: 1, projectBytes: 17 } });
      const second = await put(id, 'src/App.jsx', 'export default 22;');
      expect(second).toEqual({ status: 200, body: { path: 'src/App.jsx', bytes: 18, created: false, fileCount: 1, projectBytes: 18 } });
      // `./` is dropped and percent-encoding decoded: the stored path is the normal form.
      expect((await put(id, './src/deep/n%C3%A9sted%20file.css', '€')).body).toMatchObject({ path: 'src/deep/nésted file.css', bytes: 3 });

      const listed = await send('GET', `/v1/projects/${id}/files`);
      expect(listed.body.files).toEqual([
        { path: 'src/App.jsx', bytes: 18, binary: false, updatedAt: expect.any(String) },
        { path: 'src/deep/nésted file.css', bytes: 3, binary: false, updatedAt: expect.any(String) },
      ]);
      expect(await store.listProjectFiles(id)).toEqual([
        { path: 'src/App.jsx', content: 'export default 22;' },
        { path: 'src/deep/nésted file.css', content: '€' },
      ]);

      expect(await send('DELETE', `/v1/projects/${id}/files/src/App.jsx`)).toEqual({ status: 204, body: undefined });
      const again = await send('DELETE', `/v1/projects/${id}/files/src/App.jsx`);
      expect(again).toMatchObject({ status: 404, body: { statusCode: 404, field: 'path' } });
      expect((await send('GET', `/v1/projects/${id}/files`)).body.files.map((f: { path: string }) => f.path)).toEqual(['src/deep/nésted file.css']);

      const stream = await changes.read(id);
      expect(stream.map((s) => s.change)).toEqual([
        { type: 'put', projectId: id, path: 'src/App.jsx', content: 'export default 1;', at: expect.any(Number) },
        { type: 'put', projectId: id, path: 'src/App.jsx', content: 'export default 22;', at: expect.any(Number) },
        { type: 'put', projectId: id, path: 'src/deep/nésted file.css', content: '€', at: expect.any(Number) },
        { type: 'delete', projectId: id, path: 'src/App.jsx', at: expect.any(Number) },
      ]);
      expect(await redis.ttl(changes.key(id))).toBeGreaterThan(0);
    });

    it.each([
      ['%2e%2e/evil.js', '".." segment'],
      ['src/%2E%2E/%2E%2E/evil.js', '".." segment'],
      ['%2Fetc%2Fpasswd', 'absolute path'],
      ['C:%5Cx.js', 'backslash'],
      ['src%5CApp.jsx', 'backslash'],
      ['src//App.jsx', 'empty path segment'],
      ['src/', 'empty path segment'],
      ['evil%00.js', 'NUL byte'],
      ['node_modules/react/index.js', '"node_modules" is reserved'],
      ['.vite-cache/deps/x.js', '".vite-cache" is reserved'],
      ['.git/config', '".git" is reserved'],
    ])('refuses the path %s with 400 naming path (%s), on PUT and DELETE, and stores nothing', async (path, reason) => {
      const id = await newProject();
      for (const method of ['PUT', 'DELETE']) {
        const res = await send(method, `/v1/projects/${id}/files/${path}`, method === 'PUT' ? { content: 'x' } : undefined);
        expect(res.status).toBe(400);
        expect(res.body).toEqual({ statusCode: 400, error: 'Bad Request', message: expect.stringContaining(reason), field: 'path' });
        expect(res.body.message.startsWith('path: ')).toBe(true);
      }
      expect(await store.listProjectFiles(id)).toEqual([]);
      expect(await changes.read(id)).toEqual([]);
    });

    it('refuses a PUT without a path, and a path that is not valid percent-encoding', async () => {
      const id = await newProject();
      expect(await send('PUT', `/v1/projects/${id}/files`, { content: 'x' })).toMatchObject({ status: 400, body: { field: 'path' } });
      expect(await send('PUT', `/v1/projects/${id}/files/`, { content: 'x' })).toMatchObject({ status: 400, body: { field: 'path' } });
      // The router refuses it before the controller runs.
      expect(await send('PUT', `/v1/projects/${id}/files/%E0%A4%A`, { content: 'x' })).toMatchObject({ status: 400, body: { statusCode: 400 } });
      expect(await store.listProjectFiles(id)).toEqual([]);
    });

    it.each([
      [{ content: 42 }, 'content', ''],
      [{}, 'content', 'required'],
      [{ content: 'x', mode: '0755' }, 'mode', 'unknown field'],
      [{ content: 'binary\u0000data' }, 'content', 'NUL'],
      // JSON.stringify writes a lone surrogate as the escape \ud800: valid JSON, but not a character of UTF-8 text.
      [{ content: 'a\ud800b' }, 'content', 'not valid UTF-8'],
      [{ content: '\udfff' }, 'content', 'not valid UTF-8'],
      [{ base64: 'not base64!' }, 'base64', 'base64'],
      [{ base64: 'AAA' }, 'base64', 'base64'],
      [{ base64: 42 }, 'base64', ''],
      [{ content: 'x', base64: 'AA==' }, 'base64', 'not both'],
    ])('refuses the body %j with 400 naming %s', async (body, field, message) => {
      const id = await newProject();
      const res = await send('PUT', `/v1/projects/${id}/files/a.txt`, body);
      expect(res).toMatchObject({ status: 400, body: { statusCode: 400, field } });
      expect(res.body.message).toContain(message);
      expect(await store.listProjectFiles(id)).toEqual([]);
    });

    it('refuses JSON that does not parse or is not UTF-8; a body of any other type is bytes', async () => {
      const id = await newProject();
      const broken = await send('PUT', `/v1/projects/${id}/files/a.txt`, '{"content":');
      expect(broken).toMatchObject({ status: 400, body: { field: 'body' } });
      const latin1 = await send('PUT', `/v1/projects/${id}/files/a.txt`, '{"content":"x"}', { 'content-type': 'application/json; charset=latin1' });
      expect(latin1).toMatchObject({ status: 415, body: { statusCode: 415, field: 'content-type' } });
      expect(await store.listProjectFiles(id)).toEqual([]);
      const text = await send('PUT', `/v1/projects/${id}/files/a.txt`, 'plain', { 'content-type': 'text/plain' });
      expect(text).toMatchObject({ status: 201, body: { bytes: 5 } });
      expect(await store.listProjectFiles(id)).toEqual([{ path: 'a.txt', content: Buffer.from('plain').toString('base64'), encoding: 'base64' }]);
    });
  });

  describe('binary files', () => {
    /** A real 1×1 PNG (signature, IHDR, IDAT, IEND): NUL and high bytes, not UTF-8. */
    const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==', 'base64');
    const everyByte = Buffer.from(Array.from({ length: 256 }, (_, i) => i)).subarray(0, 64);

    /** An active session of the project (as the provisioner leaves it) and its machine token. */
    async function machineOf(projectId: string) {
      const sessionId = randomUUID();
      await store.createSession({ id: sessionId, projectId, tier: 'free', resourceLimits: { cpus: 1, memoryMb: 512 }, status: 'creating' });
      await store.transition(sessionId, 'starting', { containerId: `m-${sessionId}`, containerUrl: 'http://127.0.0.1:9' });
      await store.transition(sessionId, 'active', { previewUrl: `${base}/p/${sessionId}/`, ttlSeconds: 600 });
      const token = createMachineToken({ sessionId, projectId }, config.MACHINE_TOKEN_SECRET, 600);
      return { files: async () => (await send('GET', `/v1/machines/${sessionId}/files`, undefined, { authorization: `Bearer ${token}` })).body.files };
    }

    it('PUT with application/octet-stream stores the bytes; the machine gets the same bytes, and so does the change stream', async () => {
      expect(PNG.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
      const id = await newProject();
      const res = await send('PUT', `/v1/projects/${id}/files/src/assets/hero.png`, PNG, { 'content-type': 'application/octet-stream' });
      expect(res).toEqual({ status: 201, body: { path: 'src/assets/hero.png', bytes: PNG.length, created: true, fileCount: 1, projectBytes: PNG.length } });
      expect((await put(id, 'src/App.jsx', 'import hero from "./assets/hero.png";')).status).toBe(201);

      const listed = (await send('GET', `/v1/projects/${id}/files`)).body.files;
      expect(listed).toEqual([
        { path: 'src/App.jsx', bytes: 37, binary: false, updatedAt: expect.any(String) },
        { path: 'src/assets/hero.png', bytes: PNG.length, binary: true, updatedAt: expect.any(String) },
      ]);

      const files = await (await machineOf(id)).files();
      expect(files).toEqual([
        { path: 'src/App.jsx', content: 'import hero from "./assets/hero.png";' },
        { path: 'src/assets/hero.png', content: PNG.toString('base64'), encoding: 'base64' },
      ]);
      expect(Buffer.from(files[1].content, 'base64').equals(PNG)).toBe(true);

      const [change] = await changes.read(id);
      expect(change.change).toEqual({ type: 'put', projectId: id, path: 'src/assets/hero.png', content: PNG.toString('base64'), encoding: 'base64', at: expect.any(Number) });
    });

    it('any non-JSON media type (image/png) and JSON { base64 } store bytes too, every byte value kept', async () => {
      const id = await newProject();
      expect(await send('PUT', `/v1/projects/${id}/files/a.bin`, everyByte, { 'content-type': 'image/png' })).toMatchObject({ status: 201, body: { bytes: 64 } });
      const high = Buffer.from(Array.from({ length: 64 }, (_, i) => 192 + i));
      expect(await send('PUT', `/v1/projects/${id}/files/b.bin`, { base64: high.toString('base64') })).toMatchObject({ status: 201, body: { bytes: 64 } });
      // A body without a content type is bytes as well (RFC 9110: the recipient may take it as application/octet-stream).
      const none = await new Promise<number>((resolve, reject) => {
        const { hostname, port } = new URL(base);
        const req = request({ host: hostname, port, path: `/v1/projects/${id}/files/c.bin`, method: 'PUT' }, (r) => {
          r.resume();
          resolve(r.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end(Buffer.from([0, 1, 2]));
      });
      expect(none).toBe(201);
      const files = await (await machineOf(id)).files();
      expect(files.map((f: { path: string; content: string }) => [f.path, Buffer.from(f.content, 'base64').toString('hex')])).toEqual([
        ['a.bin', everyByte.toString('hex')],
        ['b.bin', high.toString('hex')],
        ['c.bin', '000102'],
      ]);
    });

    it('counts real bytes against MAX_FILE_BYTES and MAX_PROJECT_BYTES, however the bytes are sent', async () => {
      const id = await newProject();
      // 100 bytes are 136 base64 characters: within the 100-byte file limit.
      expect((await send('PUT', `/v1/projects/${id}/files/a.bin`, { base64: Buffer.alloc(100, 1).toString('base64') })).status).toBe(201);
      expect((await send('PUT', `/v1/projects/${id}/files/b.bin`, Buffer.alloc(100, 2), { 'content-type': 'application/octet-stream' })).status).toBe(201);

      const json = await send('PUT', `/v1/projects/${id}/files/c.bin`, { base64: Buffer.alloc(101).toString('base64') });
      expect(json.status).toBe(413);
      expect(json.body).toMatchObject({ field: 'content', message: expect.stringContaining('101 bytes') });
      // A raw body over the file limit is refused by the body parser, before it is read whole.
      const raw = await send('PUT', `/v1/projects/${id}/files/c.bin`, Buffer.alloc(101), { 'content-type': 'application/octet-stream' });
      expect(raw.status).toBe(413);
      expect(raw.body).toEqual({ statusCode: 413, error: 'Payload Too Large', message: expect.stringContaining('MAX_FILE_BYTES'), field: 'body' });
      expect(raw.body.message).toContain('100 bytes');

      // 200 bytes stored; 51 more would make 251, over the project's 250.
      const over = await send('PUT', `/v1/projects/${id}/files/c.bin`, Buffer.alloc(51), { 'content-type': 'application/octet-stream' });
      expect(over).toMatchObject({ status: 413, body: { field: 'content', message: expect.stringContaining('251 bytes') } });
      expect((await send('PUT', `/v1/projects/${id}/files/c.bin`, Buffer.alloc(50), { 'content-type': 'application/octet-stream' })).body).toMatchObject({ projectBytes: 250 });
      expect((await send('GET', `/v1/projects/${id}/files`)).body.files.map((f: { bytes: number }) => f.bytes)).toEqual([100, 100, 50]);
    });
  });

  describe('limits', () => {
    it('answers 413 naming content for a file over MAX_FILE_BYTES, counting UTF-8 bytes', async () => {
      const id = await newProject();
      expect((await put(id, 'ok.txt', 'a'.repeat(100))).status).toBe(201);
      const big = await put(id, 'big.txt', 'a'.repeat(101));
      expect(big.status).toBe(413);
      expect(big.body).toEqual({ statusCode: 413, error: 'Payload Too Large', message: expect.stringContaining('MAX_FILE_BYTES'), field: 'content' });
      // 34 characters, 102 bytes.
      expect((await put(id, 'euro.txt', '€'.repeat(34))).status).toBe(413);
      expect((await send('GET', `/v1/projects/${id}/files`)).body.files.map((f: { path: string }) => f.path)).toEqual(['ok.txt']);
    });

    it('answers 413 naming content when the project would pass MAX_PROJECT_BYTES; replacing counts the old size out', async () => {
      const id = await newProject();
      expect((await put(id, 'a.txt', 'a'.repeat(90))).status).toBe(201);
      expect((await put(id, 'b.txt', 'b'.repeat(100))).status).toBe(201);
      const over = await put(id, 'c.txt', 'c'.repeat(61));
      expect(over.status).toBe(413);
      expect(over.body).toMatchObject({ field: 'content', message: expect.stringContaining('251 bytes') });
      expect(over.body.message).toContain('MAX_PROJECT_BYTES');
      expect((await put(id, 'c.txt', 'c'.repeat(60))).status).toBe(201);
      // 250 bytes now: replacing a.txt with 94 bytes would make 254.
      expect((await put(id, 'a.txt', 'a'.repeat(94))).status).toBe(413);
      expect((await put(id, 'a.txt', 'a'.repeat(10))).status).toBe(200);
    });

    it('answers 400 naming path for a new file past MAX_PROJECT_FILES; existing files may still change', async () => {
      const id = await newProject();
      for (const name of ['1.txt', '2.txt', '3.txt']) expect((await put(id, name, name)).status).toBe(201);
      const fourth = await put(id, '4.txt', 'x');
      expect(fourth.status).toBe(400);
      expect(fourth.body).toMatchObject({ statusCode: 400, field: 'path', message: expect.stringContaining('MAX_PROJECT_FILES') });
      expect((await put(id, '2.txt', 'changed')).status).toBe(200);
      expect((await send('DELETE', `/v1/projects/${id}/files/1.txt`)).status).toBe(204);
      expect((await put(id, '4.txt', 'x')).status).toBe(201);
      const kinds = (await changes.read(id)).map((s) => `${s.change.type} ${s.change.path}`);
      expect(kinds).toEqual(['put 1.txt', 'put 2.txt', 'put 3.txt', 'put 2.txt', 'delete 1.txt', 'put 4.txt']);
    });

    it('holds under concurrent writes: of 8 new files at once, exactly MAX_PROJECT_FILES are stored', async () => {
      const id = await newProject();
      const results = await Promise.all(Array.from({ length: 8 }, (_, i) => put(id, `f${i}.txt`, `${i}`)));
      expect(results.filter((r) => r.status === 201)).toHaveLength(3);
      expect(results.filter((r) => r.status === 400 && r.body.field === 'path')).toHaveLength(5);
      expect(await store.listProjectFiles(id)).toHaveLength(3);
      expect(await changes.read(id)).toHaveLength(3);
    });
  });
});

