import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createMachineToken, fileEtag, FileChangeLog, MAX_PATHS_PER_READ, type Config } from '@velocity/contracts';
import { createRedis, EventLog, stopProcess } from '@velocity/ops';
import { PostgresSessionStore } from '@velocity/session-store';
import { readSse, type SseFrame, freePort } from '@velocity/runtime';
import { testConfig, startTestApi } from '@velocity/testing';

/**
 * `GET /v1/machines/:sessionId/file-changes` on a real api process (Nest's bullmq
 * module cannot load inside Jest), real Postgres and Redis: the machine token,
 * `resync` first, every change in order with its id, Last-Event-ID resumption,
 * `resync` after a trim, `ended` when the session ends, 410 once it has. The
 * stream holds notices, not contents: the machine reads the files a notice
 * names with `POST /v1/machines/:sessionId/files`.
 */
const HEARTBEAT_MS = 300;

interface Stream {
  status: number;
  /** The next frame, or null when the server closed the stream. */
  next(timeoutMs?: number): Promise<SseFrame | null>;
  close(): void;
}

describe('file changes stream', () => {
  let config: Config;
  let api: ChildProcess;
  let base: string;
  const redis = createRedis('redis://127.0.0.1:6379');
  let store: PostgresSessionStore;
  let events: EventLog;
  let changes: FileChangeLog;
  const open: Stream[] = [];

  beforeAll(async () => {
    const port = await freePort();
    config = testConfig({ API_PORT: port, SSE_HEARTBEAT_MS: HEARTBEAT_MS });
    ({ child: api, base } = await startTestApi(config));
    store = new PostgresSessionStore(config.DATABASE_URL, { max: 2 });
    events = new EventLog(redis, config.QUEUE_PREFIX, 60);
    changes = new FileChangeLog(redis, config.QUEUE_PREFIX, 60);
  }, 40_000);

  afterEach(() => {
    for (const stream of open.splice(0)) stream.close();
  });

  afterAll(async () => {
    if (api) await stopProcess(api);
    await store?.close();
    const keys = await redis.keys(`${config.QUEUE_PREFIX}:*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });

  /** A project (via the api) and an active session of it (via the store, as the provisioner leaves it). */
  async function activeSession() {
    const project = await fetch(`${base}/v1/projects`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'stream spec', templateType: 'react' }),
    }).then((r) => r.json());
    const sessionId = randomUUID();
    await store.createSession({ id: sessionId, projectId: project.id, tier: 'free', resourceLimits: { cpus: 1, memoryMb: 512 }, status: 'creating' });
    await store.transition(sessionId, 'starting', { containerId: `m-${sessionId}`, containerUrl: 'http://127.0.0.1:9' });
    await store.transition(sessionId, 'active', { previewUrl: `${base}/p/${sessionId}/`, ttlSeconds: 600 });
    const token = createMachineToken({ sessionId, projectId: project.id }, config.MACHINE_TOKEN_SECRET, 600);
    return { projectId: project.id as string, sessionId, token };
  }

  async function connect(sessionId: string, token: string | null, headers: Record<string, string> = {}): Promise<Stream> {
    const controller = new AbortController();
    const res = await fetch(`${base}/v1/machines/${sessionId}/file-changes`, {
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
      signal: controller.signal,
    });
    if (res.status !== 200 || !res.body) {
      const stream = { status: res.status, body: await res.json(), next: async () => null, close: () => undefined };
      return stream as Stream & { body: unknown };
    }
    const frames = readSse(res.body)[Symbol.asyncIterator]();
    const stream: Stream = {
      status: res.status,
      async next(timeoutMs = 5000) {
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no frame within ${timeoutMs} ms`)), timeoutMs);
        });
        try {
          const result = await Promise.race([frames.next(), timeout]);
          return result.done ? null : result.value;
        } finally {
          clearTimeout(timer);
        }
      },
      close: () => controller.abort(),
    };
    open.push(stream);
    return stream;
  }

  const putFile = (projectId: string, path: string, content: string) =>
    fetch(`${base}/v1/projects/${projectId}/files/${path}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ content }),
    }).then((r) => r.status);
  const deleteFile = (projectId: string, path: string) =>
    fetch(`${base}/v1/projects/${projectId}/files/${path}`, { method: 'DELETE' }).then((r) => r.status);

  it('needs the machine token of the session', async () => {
    const { sessionId, projectId, token } = await activeSession();
    const none = (await connect(sessionId, null)) as Stream & { body: unknown };
    expect(none.status).toBe(401);
    expect(none.body).toMatchObject({ statusCode: 401, field: 'authorization' });
    expect((await connect(sessionId, `${token}x`)).status).toBe(401);
    const other = createMachineToken({ sessionId: randomUUID(), projectId }, config.MACHINE_TOKEN_SECRET, 600);
    expect((await connect(sessionId, other)).status).toBe(403);
    const expired = createMachineToken({ sessionId, projectId }, config.MACHINE_TOKEN_SECRET, -1);
    expect((await connect(sessionId, expired)).status).toBe(401);
    const badCursor = (await connect(sessionId, token, { 'last-event-id': 'nope' })) as Stream & { body: unknown };
    expect(badCursor.status).toBe(400);
    expect(badCursor.body).toMatchObject({ field: 'Last-Event-ID' });
    const ghost = randomUUID();
    const ghostToken = createMachineToken({ sessionId: ghost, projectId }, config.MACHINE_TOKEN_SECRET, 600);
    expect((await connect(ghost, ghostToken)).status).toBe(404);
  });

  it('starts with resync, then streams every change in order; Last-Event-ID resumes after a given change', async () => {
    const { sessionId, projectId, token } = await activeSession();
    const stream = await connect(sessionId, token);
    expect(stream.status).toBe(200);
    const resync = await stream.next();
    expect(resync).toEqual({ id: '0-0', event: 'resync', data: JSON.stringify({ cursor: '0-0' }) });

    expect(await putFile(projectId, 'src/Note.jsx', 'one')).toBe(201);
    expect(await putFile(projectId, 'src/Note.jsx', 'two\n"quoted"')).toBe(200);
    expect(await deleteFile(projectId, 'src/Note.jsx')).toBe(204);
    const frames = [await stream.next(), await stream.next(), await stream.next()];
    expect(frames.map((f) => f?.event)).toEqual(['put', 'put', 'delete']);
    expect(frames.map((f) => JSON.parse(f!.data))).toEqual([
      { type: 'put', projectId, path: 'src/Note.jsx', etag: fileEtag({ content: 'one' }), bytes: 3, at: expect.any(Number) },
      { type: 'put', projectId, path: 'src/Note.jsx', etag: fileEtag({ content: 'two\n"quoted"' }), bytes: 12, at: expect.any(Number) },
      { type: 'delete', projectId, path: 'src/Note.jsx', at: expect.any(Number) },
    ]);
    const ids = frames.map((f) => f!.id!);
    expect(ids.every((id) => /^\d+-\d+$/.test(id))).toBe(true);

    // A refused write is not streamed.
    expect(await putFile(projectId, '../evil.js', 'x')).not.toBe(201);

    const resumed = await connect(sessionId, token, { 'last-event-id': ids[0] });
    expect((await resumed.next())?.id).toBe(ids[1]);
    expect((await resumed.next())?.id).toBe(ids[2]);

    // A fresh connection resyncs at the stream's end, so it does not replay the past.
    const fresh = await connect(sessionId, token);
    expect(await fresh.next()).toEqual({ id: ids[2], event: 'resync', data: JSON.stringify({ cursor: ids[2] }) });
  });

  /** POST /v1/machines/:sessionId/files: the files at `paths`, as a machine reads what a notice names. */
  const readFiles = (sessionId: string, token: string | null, body: unknown) =>
    fetch(`${base}/v1/machines/${sessionId}/files`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    }).then(async (r) => ({ status: r.status, body: await r.json() }));

  it('notices a binary file by its ETag and size; the machine reads its bytes by path, byte for byte', async () => {
    const { sessionId, projectId, token } = await activeSession();
    const stream = await connect(sessionId, token);
    expect((await stream.next())?.event).toBe('resync');
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => 255 - i));
    const res = await fetch(`${base}/v1/projects/${projectId}/files/src/assets/font.woff2`, {
      method: 'PUT',
      headers: { 'content-type': 'font/woff2' },
      body: bytes,
    });
    expect(res.status).toBe(201);
    const frame = await stream.next();
    expect(frame?.event).toBe('put');
    const etag = fileEtag({ content: bytes.toString('base64'), encoding: 'base64' });
    expect(JSON.parse(frame!.data)).toEqual({ type: 'put', projectId, path: 'src/assets/font.woff2', etag, bytes: 256, at: expect.any(Number) });
    expect(res.headers.get('etag')).toBe(`"${etag}"`);

    const read = await readFiles(sessionId, token, { paths: ['src/assets/font.woff2', 'src/App.jsx', 'no/such/file.js'] });
    expect(read.status).toBe(200);
    expect(read.body.files.map((f: { path: string }) => f.path)).toEqual(['src/App.jsx', 'src/assets/font.woff2']);
    const font = read.body.files[1];
    expect(font).toEqual({ path: 'src/assets/font.woff2', content: bytes.toString('base64'), encoding: 'base64' });
    expect(Buffer.from(font.content, 'base64').equals(bytes)).toBe(true);
  });

  it('reads files by path only with the session token, only while it is live, and with a bounded list of paths', async () => {
    const { sessionId, projectId, token } = await activeSession();
    expect((await readFiles(sessionId, null, { paths: ['src/App.jsx'] })).body).toMatchObject({ statusCode: 401, field: 'authorization' });
    const other = createMachineToken({ sessionId: randomUUID(), projectId }, config.MACHINE_TOKEN_SECRET, 600);
    expect((await readFiles(sessionId, other, { paths: ['src/App.jsx'] })).status).toBe(403);
    const expired = createMachineToken({ sessionId, projectId }, config.MACHINE_TOKEN_SECRET, -1);
    expect((await readFiles(sessionId, expired, { paths: ['src/App.jsx'] })).status).toBe(401);
    expect((await readFiles('nope', token, { paths: ['a'] })).body).toMatchObject({ statusCode: 400, field: 'sessionId' });

    expect((await readFiles(sessionId, token, { paths: [] })).body).toMatchObject({ statusCode: 400, field: 'paths', message: 'paths: name at least one path' });
    expect((await readFiles(sessionId, token, {})).body).toMatchObject({ statusCode: 400, field: 'paths' });
    expect((await readFiles(sessionId, token, { paths: ['a'], content: true })).body).toMatchObject({ statusCode: 400, field: 'content' });
    expect((await readFiles(sessionId, token, { paths: [''] })).body).toMatchObject({ statusCode: 400, field: 'paths.0' });
    // Long paths (MAX_PATH_LENGTH is 1024): the body is over a megabyte.
    const tooMany = Array.from({ length: MAX_PATHS_PER_READ + 1 }, (_, i) => `src/${'d'.repeat(1000)}/f${i}.js`);
    expect((await readFiles(sessionId, token, { paths: tooMany })).body).toMatchObject({ statusCode: 400, field: 'paths', message: expect.stringContaining(`at most ${MAX_PATHS_PER_READ}`) });
    // The most one read may name fits in its body (larger than other machine requests may be).
    expect((await readFiles(sessionId, token, { paths: tooMany.slice(1) })).body).toEqual({ files: [] });

    await store.transition(sessionId, 'ending');
    expect((await readFiles(sessionId, token, { paths: ['src/App.jsx'] })).status).toBe(410);
  });

  it('keeps the stream small: 30 writes of a 1 MiB file add notices of a few bytes, not the file', async () => {
    const { projectId } = await activeSession();
    const size = 1024 * 1024;
    for (let i = 0; i < 30; i++) {
      // Each write differs (its first character), as an editor saving a large asset again would.
      const content = String.fromCharCode(65 + (i % 26)) + 'x'.repeat(size - 1);
      expect(await putFile(projectId, 'public/big.txt', content)).toBe(i === 0 ? 201 : 200);
    }
    const stored = await changes.read(projectId);
    expect(stored).toHaveLength(30);
    expect(stored[29].change).toMatchObject({ type: 'put', path: 'public/big.txt', bytes: size });
    const memory = Number(await redis.call('MEMORY', 'USAGE', changes.key(projectId)));
    expect(memory).toBeLessThan(64 * 1024);
  }, 60_000);

  it('answers resync when changes after the cursor were trimmed away', async () => {
    const { sessionId, projectId, token } = await activeSession();
    await putFile(projectId, 'a.txt', '1');
    const [first] = await changes.read(projectId);
    await putFile(projectId, 'a.txt', '2');
    await putFile(projectId, 'a.txt', '3');
    await redis.xtrim(changes.key(projectId), 'MAXLEN', 1);
    const last = (await changes.read(projectId)).at(-1)!;

    const behind = await connect(sessionId, token, { 'last-event-id': first.id });
    expect(await behind.next()).toEqual({ id: last.id, event: 'resync', data: JSON.stringify({ cursor: last.id }) });
    // At the end already: no resync, just what comes next.
    const current = await connect(sessionId, token, { 'last-event-id': last.id });
    await putFile(projectId, 'a.txt', '4');
    expect(JSON.parse((await current.next())!.data)).toMatchObject({ type: 'put', etag: fileEtag({ content: '4' }) });
  });

  it('answers resync for an entry it cannot read (an older version wrote it, contents and all)', async () => {
    const { sessionId, projectId, token } = await activeSession();
    const stream = await connect(sessionId, token);
    await stream.next(); // resync at the start
    const oldId = (await redis.xadd(changes.key(projectId), '*', 'c', JSON.stringify({ type: 'put', projectId, path: 'a.txt', content: 'old', at: 1 })))!;
    expect(await stream.next()).toEqual({ id: oldId, event: 'resync', data: JSON.stringify({ cursor: oldId }) });
    // The stream goes on after it.
    await putFile(projectId, 'a.txt', 'new');
    expect(JSON.parse((await stream.next())!.data)).toMatchObject({ type: 'put', etag: fileEtag({ content: 'new' }) });
  });

  it('sends heartbeats while idle', async () => {
    const { sessionId, token } = await activeSession();
    const res = await fetch(`${base}/v1/machines/${sessionId}/file-changes`, { headers: { authorization: `Bearer ${token}` } });
    const reader = res.body!.getReader();
    let text = '';
    const deadline = Date.now() + 5 * HEARTBEAT_MS + 2000;
    while (!text.includes(': heartbeat') && Date.now() < deadline) text += new TextDecoder().decode((await reader.read()).value);
    await reader.cancel();
    expect(text).toContain('event: resync');
    expect(text).toContain(': heartbeat');
  });

  it('says ended, then closes, the moment the session is announced gone, and answers 410 after', async () => {
    const { sessionId, token } = await activeSession();
    const stream = await connect(sessionId, token);
    expect((await stream.next())?.event).toBe('resync');
    // Only the announcement (the row still says active): the heartbeat's row check cannot be what ends it.
    await events.append({ type: 'ending', sessionId, at: Date.now(), reason: 'expired' });
    expect(await stream.next()).toEqual({ event: 'ended', data: JSON.stringify({ reason: 'session ended' }) });
    expect(await stream.next()).toBeNull();
    await store.transition(sessionId, 'ending');

    const gone = (await connect(sessionId, token)) as Stream & { body: unknown };
    expect(gone.status).toBe(410);
    expect(gone.body).toMatchObject({ statusCode: 410, error: 'Gone', sessionId });
    await store.transition(sessionId, 'ended', { ended: true });
    expect((await connect(sessionId, token)).status).toBe(410);
  });

  it('says ended when only the row says so (checked at each heartbeat)', async () => {
    const { sessionId, token } = await activeSession();
    const stream = await connect(sessionId, token);
    expect((await stream.next())?.event).toBe('resync');
    await store.transition(sessionId, 'ending');
    expect(await stream.next(5 * HEARTBEAT_MS + 2000)).toEqual({ event: 'ended', data: JSON.stringify({ reason: 'session ending (its row)' }) });
  });
});

