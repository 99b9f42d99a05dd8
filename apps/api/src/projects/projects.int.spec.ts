import type { ChildProcess } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { request, type IncomingHttpHeaders } from 'node:http';
import { createMachineToken, FileChangeLog, templateFiles, type Config } from '@velocity/contracts';
import { createRedis, stopProcess } from '@velocity/ops';
import { PostgresSessionStore } from '@velocity/session-store';
import { testConfig, startTestApi, rawRequest } from '@velocity/testing';
import { freePort } from '@velocity/runtime';

/** The strong ETag of these bytes as the api answers it. */
const etagOf = (bytes: string | Buffer) => `"${createHash('sha256').update(bytes).digest('hex')}"`;
/** The ETag of a change notice: the hex SHA-256 of the bytes, unquoted. */
const hexOf = (bytes: string | Buffer) => createHash('sha256').update(bytes).digest('hex');
const byCodePoint = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

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
  /** A project without files (POST would give it its template's, past this spec's small limits). */
  const newProject = async (templateType = 'react') => (await store.createProject({ name: 'spec project', templateType })).id;

  describe('POST /v1/projects and GET /v1/projects/:id', () => {
    it.each(['react', 'vue', 'svelte', 'vanilla-ts'])('creates a %s project (201) that GET returns', async (templateType) => {
      const created = await send('POST', '/v1/projects', { name: '  My app  ', templateType });
      expect(created.status).toBe(201);
      expect(created.body).toEqual({ id: expect.stringMatching(/^[0-9a-f-]{36}$/), name: 'My app', templateType, createdAt: expect.any(String), updatedAt: expect.any(String) });
      const read = await send('GET', `/v1/projects/${created.body.id}`);
      expect(read).toEqual({ status: 200, body: created.body });
      // It holds its template's files from the start (more than this spec's limits allow a client to write).
      const listed = await send('GET', `/v1/projects/${created.body.id}/files`);
      expect(listed.body.files.map((f: { path: string }) => f.path)).toEqual(templateFiles(templateType).map((f) => f.path).sort(byCodePoint));
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
      expect(first).toEqual({ status: 201, body: { path: 'src/App.jsx', bytes: 17, created: true, fileCount: 1, projectBytes: 17, etag: etagOf('export default 1;') } });
      const second = await put(id, 'src/App.jsx', 'export default 22;');
      expect(second).toEqual({ status: 200, body: { path: 'src/App.jsx', bytes: 18, created: false, fileCount: 1, projectBytes: 18, etag: etagOf('export default 22;') } });
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
        { type: 'put', projectId: id, path: 'src/App.jsx', etag: hexOf('export default 1;'), bytes: 17, at: expect.any(Number) },
        { type: 'put', projectId: id, path: 'src/App.jsx', etag: hexOf('export default 22;'), bytes: 18, at: expect.any(Number) },
        { type: 'put', projectId: id, path: 'src/deep/nésted file.css', etag: hexOf('€'), bytes: 3, at: expect.any(Number) },
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
      expect(res).toEqual({ status: 201, body: { path: 'src/assets/hero.png', bytes: PNG.length, created: true, fileCount: 1, projectBytes: PNG.length, etag: etagOf(PNG) } });
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
      expect(change.change).toEqual({ type: 'put', projectId: id, path: 'src/assets/hero.png', etag: hexOf(PNG), bytes: PNG.length, at: expect.any(Number) });
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

  describe('reading files back, ETags, changes of several files', () => {
    /** GET of a file: its bytes as sent, and its headers. */
    const getFile = (projectId: string, path: string, headers: Record<string, string> = {}) =>
      new Promise<{ status: number; headers: IncomingHttpHeaders; bytes: Buffer }>((resolve, reject) => {
        const { hostname, port } = new URL(base);
        request({ host: hostname, port, path: `/v1/projects/${projectId}/files/${path}`, headers }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes: Buffer.concat(chunks) }));
        })
          .on('error', reject)
          .end();
      });

    it('answers a file with its bytes, a type from its name and the ETag its write answered; 304 for a current If-None-Match', async () => {
      const id = await newProject();
      const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 255, 1, 2]);
      const written = await send('PUT', `/v1/projects/${id}/files/img/logo.png`, png, { 'content-type': 'image/png' });
      expect(written.status).toBe(201);
      const read = await getFile(id, 'img/logo.png');
      expect(read.status).toBe(200);
      expect(read.bytes.equals(png)).toBe(true);
      expect(read.headers).toMatchObject({ 'content-type': 'image/png', etag: written.body.etag, 'x-content-type-options': 'nosniff' });
      // A page uploaded to a project never runs on the api's origin.
      expect(read.headers['content-security-policy']).toMatch(/sandbox/);
      expect((await put(id, 'src/App.tsx', 'export const é = 1;\n')).status).toBe(201);
      const source = await getFile(id, 'src/App.tsx');
      expect(source.bytes.toString('utf8')).toBe('export const é = 1;\n');
      expect(source.headers['content-type']).toBe('text/typescript; charset=utf-8');
      expect((await getFile(id, 'img/logo.png', { 'if-none-match': written.body.etag })).status).toBe(304);
      expect((await send('GET', `/v1/projects/${id}/files/nope.txt`)).body).toMatchObject({ statusCode: 404, field: 'path' });
      expect((await send('GET', `/v1/projects/${id}/files/a/%2e%2e/b`)).body).toMatchObject({ statusCode: 400, field: 'path' });
    });

    it('writes only while If-Match is the current ETag; a stale one answers 412 with the current ETag and changes nothing', async () => {
      const id = await newProject();
      const first = await put(id, 'a.txt', 'one');
      const second = await send('PUT', `/v1/projects/${id}/files/a.txt`, { content: 'two' }, { 'if-match': first.body.etag });
      expect(second.status).toBe(200);
      const stale = await rawRequest(base, 'PUT', `/v1/projects/${id}/files/a.txt`, {
        headers: { 'content-type': 'application/json', 'if-match': first.body.etag },
        body: JSON.stringify({ content: 'three' }),
      });
      expect(stale.status).toBe(412);
      expect(stale.body).toMatchObject({ statusCode: 412, field: 'If-Match', etag: second.body.etag });
      expect(stale.headers.etag).toBe(second.body.etag);
      expect((await getFile(id, 'a.txt')).bytes.toString()).toBe('two');
      // `*`: only while it exists; a new path with an If-Match fails.
      expect((await send('PUT', `/v1/projects/${id}/files/a.txt`, { content: 'four' }, { 'if-match': '*' })).status).toBe(200);
      expect((await send('PUT', `/v1/projects/${id}/files/new.txt`, { content: 'x' }, { 'if-match': '*' })).body).toMatchObject({ statusCode: 412, etag: null });
      expect((await send('PUT', `/v1/projects/${id}/files/a.txt`, { content: 'x' }, { 'if-match': 'W/"abc"' })).body).toMatchObject({ statusCode: 400, field: 'If-Match' });
      expect((await send('DELETE', `/v1/projects/${id}/files/a.txt`, undefined, { 'if-match': first.body.etag })).status).toBe(412);
      expect((await send('DELETE', `/v1/projects/${id}/files/a.txt`, undefined, { 'if-match': etagOf('four') })).status).toBe(204);
      expect((await changes.read(id)).map((c) => c.change.type)).toEqual(['put', 'put', 'put', 'delete']);
    });

    it('PATCH writes and removes files together, as one change on the stream', async () => {
      const id = await newProject();
      await put(id, 'old.txt', 'old');
      const res = await send('PATCH', `/v1/projects/${id}/files`, {
        write: [{ path: 'src/a.js', content: 'export const a = 1;' }, { path: 'b.bin', base64: Buffer.from([0, 1]).toString('base64') }],
        delete: ['old.txt'],
      });
      expect(res).toEqual({
        status: 200,
        body: {
          written: [
            { path: 'b.bin', bytes: 2, created: true, etag: etagOf(Buffer.from([0, 1])) },
            { path: 'src/a.js', bytes: 19, created: true, etag: etagOf('export const a = 1;') },
          ],
          deleted: ['old.txt'],
          fileCount: 2,
          projectBytes: 21,
        },
      });
      const stream = await changes.read(id);
      expect(stream.map((c) => c.change.type)).toEqual(['put', 'batch']);
      expect(stream[1].change).toEqual({
        type: 'batch',
        projectId: id,
        delete: ['old.txt'],
        write: [
          { path: 'b.bin', etag: hexOf(Buffer.from([0, 1])), bytes: 2 },
          { path: 'src/a.js', etag: hexOf('export const a = 1;'), bytes: 19 },
        ],
        at: expect.any(Number),
      });
    });

    it('PATCH is all or nothing, naming the entry at fault', async () => {
      const id = await newProject();
      const { body: a } = await put(id, 'a.txt', 'a');
      const cases: [unknown, number, string][] = [
        [{ write: [{ path: 'ok.txt', content: 'x' }, { path: '../x', content: 'x' }] }, 400, 'write.1.path'],
        [{ write: [{ path: 'ok.txt', content: 'x' }], delete: ['missing.txt'] }, 404, 'delete.0'],
        [{ write: [{ path: 'ok.txt', content: 'x' }, { path: './ok.txt', content: 'y' }] }, 400, 'write.1.path'],
        [{ write: [{ path: 'big.txt', content: 'x'.repeat(101) }] }, 413, 'write.0.content'],
        [{ write: [{ path: 'n1.txt', content: 'x' }, { path: 'n2.txt', content: 'x' }, { path: 'n3.txt', content: 'x' }] }, 400, 'write'],
        [{ write: [{ path: 'a.txt', content: 'b', ifMatch: etagOf('not a') }] }, 412, 'write.0.ifMatch'],
        [{ write: [{ path: 'a.txt' }] }, 400, 'write.0.content'],
        [{}, 400, 'write'],
        [{ write: [], delete: [], extra: 1 }, 400, 'extra'],
      ];
      for (const [body, status, field] of cases) {
        const res = await send('PATCH', `/v1/projects/${id}/files`, body);
        expect({ body, status: res.status, field: res.body.field }).toEqual({ body, status, field });
      }
      expect((await send('GET', `/v1/projects/${id}/files`)).body.files.map((f: { path: string }) => f.path)).toEqual(['a.txt']);
      expect((await changes.read(id)).map((c) => c.change.type)).toEqual(['put']);
      // With the right ETag it goes through.
      expect((await send('PATCH', `/v1/projects/${id}/files`, { write: [{ path: 'a.txt', content: 'b', ifMatch: a.etag }], delete: [] })).status).toBe(200);
    });

    it('refuses text that is not valid UTF-8 inside JSON, naming content, rather than storing U+FFFD', async () => {
      const id = await newProject();
      const body = Buffer.concat([Buffer.from('{"content":"a'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')]);
      const res = await rawRequest(base, 'PUT', `/v1/projects/${id}/files/bad.txt`, { headers: { 'content-type': 'application/json' }, body });
      expect(res.status).toBe(400);
      expect(res.body).toMatchObject({ statusCode: 400, field: 'content', message: expect.stringContaining('UTF-8') });
      expect((await send('GET', `/v1/projects/${id}/files`)).body.files).toEqual([]);
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
      const kinds = (await changes.read(id)).map((s) => `${s.change.type} ${s.change.type === 'batch' ? '' : s.change.path}`);
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

