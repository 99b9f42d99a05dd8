/**
 * LiveFiles against a real api process (real Postgres and Redis): the resync on
 * connect, each change noticed and its files read from the api and applied to
 * the work folder (the newer content when a later write raced), reconnection with
 * Last-Event-ID after the api restarts, an unsafe change refused and reported,
 * and the end of the session reported on health.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, freePort } from '@velocity/runtime';
import { createMachineToken, fileByteLength, fileEtag, FileChangeLog, templateFiles, type Config, type ProjectFile } from '@velocity/contracts';
import { createRedis, EventLog, stopProcess } from '@velocity/ops';
import { PostgresSessionStore } from '@velocity/session-store';
import { testConfig, startTestApi, type TestApi } from '@velocity/testing';
import { fetchProjectFiles, fetchProjectFilesAt, writeProjectFiles } from '../src/files';
import { healthReport, type HealthState } from '../src/health';
import { fileChangesUrlOf, LiveFiles } from '../src/live-files';

jest.setTimeout(60_000);

let config: Config;
let api: TestApi | undefined;
let base: string;
const redis = createRedis('redis://127.0.0.1:6379');
let store: PostgresSessionStore;
let events: EventLog;
let changes: FileChangeLog;
const dirs: string[] = [];
const running: LiveFiles[] = [];

async function startApi(): Promise<void> {
  api = await startTestApi(config);
}

beforeAll(async () => {
  const port = await freePort();
  config = testConfig({ API_PORT: port, SSE_HEARTBEAT_MS: 500 });
  base = `http://127.0.0.1:${port}`;
  await startApi();
  store = new PostgresSessionStore(config.DATABASE_URL, { max: 2 });
  events = new EventLog(redis, config.QUEUE_PREFIX, 60);
  changes = new FileChangeLog(redis, config.QUEUE_PREFIX, 60);
}, 40_000);

afterAll(async () => {
  await Promise.all(running.map((live) => live.stop()));
  if (api) await stopProcess(api.child);
  await store?.close();
  const keys = await redis.keys(`${config.QUEUE_PREFIX}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A react project with its template's files (and `extra`), an active session of it, and a LiveFiles started as main.ts does. */
async function startLiveFiles(extra: ProjectFile[] = []) {
  const project = await store.createProject({ name: 'live files spec', templateType: 'react' });
  await store.seedProjectFiles(project.id, [...templateFiles('react'), ...extra]);
  const sessionId = randomUUID();
  await store.createSession({ id: sessionId, projectId: project.id, tier: 'free', resourceLimits: { cpus: 1, memoryMb: 512 }, status: 'creating' });
  await store.transition(sessionId, 'starting', { containerId: `m-${sessionId}`, containerUrl: 'http://127.0.0.1:9' });
  await store.transition(sessionId, 'active', { previewUrl: `${base}/p/${sessionId}/`, ttlSeconds: 600 });
  const token = createMachineToken({ sessionId, projectId: project.id }, config.MACHINE_TOKEN_SECRET, 600);
  const parent = mkdtempSync(join(tmpdir(), 'pc-live-'));
  dirs.push(parent);
  const workDir = join(parent, 'work');
  const filesUrl = `${base}/v1/machines/${sessionId}/files`;
  const files = await fetchProjectFiles(filesUrl, token);
  await writeProjectFiles(workDir, files);
  const health: HealthState = { filesLoaded: true };
  /** The paths of each read of noticed files, in order. */
  const reads: string[][] = [];
  const live = new LiveFiles({
    url: fileChangesUrlOf({}, filesUrl)!,
    token,
    workDir,
    loadSnapshot: () => fetchProjectFiles(filesUrl, token),
    loadFiles: (paths) => {
      reads.push(paths);
      return fetchProjectFilesAt(filesUrl, token, paths);
    },
    health,
    logger: createLogger('live-files-test', 'silent'),
    backoff: { initialMs: 50, maxMs: 400 },
  });
  running.push(live);
  const resynced = once<{ written: string[]; removed: string[] }>(live, 'resynced');
  live.seed(files);
  live.start();
  return { live, health, workDir, sessionId, projectId: project.id, parent, reads, firstResync: await resynced };
}

function once<T>(live: LiveFiles, event: string, timeoutMs = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "${event}" within ${timeoutMs} ms\n${(api?.output ?? []).join('\n').slice(-2000)}`)), timeoutMs);
    live.once(event, (value: T) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

/** A notice of a file as written: its ETag and size, no content. */
const notice = (file: Omit<ProjectFile, 'path'>) => ({ etag: fileEtag(file), bytes: fileByteLength(file) });

/** Writes a file in the database, then appends its notice to the stream: what an api replica does. */
async function writeAndNotice(projectId: string, file: ProjectFile): Promise<void> {
  await writeOnly(projectId, file);
  await changes.append({ type: 'put', projectId, path: file.path, ...notice(file), at: Date.now() });
}

/** Writes a file in the database without a notice (yet). */
const writeOnly = (projectId: string, file: ProjectFile) => changeOnly(projectId, { write: [file], delete: [] });

/** Changes files in the database without a notice (yet). */
async function changeOnly(projectId: string, change: { write: ProjectFile[]; delete: string[] }): Promise<void> {
  const applied = await store.applyProjectFiles(projectId, change, { maxFiles: 500, maxFileBytes: 1 << 20, maxProjectBytes: 20 << 20 });
  expect(applied.outcome).toBe('applied');
}

const api$ = (method: string, path: string, body?: unknown) =>
  fetch(base + path, { method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) }).then((r) => r.status);

describe('live files', () => {
  it('derives the stream URL from FILES_URL, or takes FILE_CHANGES_URL', () => {
    expect(fileChangesUrlOf({}, 'http://api:3000/v1/machines/abc/files')).toBe('http://api:3000/v1/machines/abc/file-changes');
    expect(fileChangesUrlOf({ FILE_CHANGES_URL: 'http://x/y' }, 'http://api/files')).toBe('http://x/y');
    expect(fileChangesUrlOf({}, 'http://127.0.0.1:9/files/ok')).toBeNull();
    // On the api's socket: the URL keeps its form (through URL, `unix:` would lose its colon).
    expect(fileChangesUrlOf({}, 'http://unix:/run/vp-api/api.sock:/v1/machines/abc/files')).toBe('http://unix:/run/vp-api/api.sock:/v1/machines/abc/file-changes');
  });

  it('resyncs on connect without rewriting unchanged files, then applies puts and deletes to the work folder', async () => {
    const { live, health, workDir, projectId, firstResync } = await startLiveFiles();
    expect(firstResync).toEqual({ written: [], removed: [] });

    let applied = once(live, 'applied');
    expect(await api$('PUT', `/v1/projects/${projectId}/files/src/App.jsx`, { content: 'export default () => "v2";\n' })).toBe(200);
    await applied;
    expect(readFileSync(join(workDir, 'src/App.jsx'), 'utf8')).toBe('export default () => "v2";\n');

    applied = once(live, 'applied');
    expect(await api$('PUT', `/v1/projects/${projectId}/files/src/deep/new/file.ts`, { content: 'export const x = 1;' })).toBe(201);
    await applied;
    expect(readFileSync(join(workDir, 'src/deep/new/file.ts'), 'utf8')).toBe('export const x = 1;');

    applied = once(live, 'applied');
    expect(await api$('DELETE', `/v1/projects/${projectId}/files/src/App.css`)).toBe(204);
    await applied;
    expect(existsSync(join(workDir, 'src/App.css'))).toBe(false);
    expect((await healthReport('x', health)).data).toBe('ok');
  });

  it('applies a PATCH as one change: every file written and removed before it reports', async () => {
    const { live, workDir, projectId, reads } = await startLiveFiles();
    const applied = once<{ type: string }>(live, 'applied');
    const write = Array.from({ length: 30 }, (_, i) => ({ path: `src/parts/p${i}.js`, content: `export const p${i} = ${i};\n` }));
    const res = await fetch(`${base}/v1/projects/${projectId}/files`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ write, delete: ['src/App.css'] }),
    });
    expect(res.status).toBe(200);
    expect(await applied).toMatchObject({ type: 'batch' });
    // One read for the whole change.
    expect(reads).toEqual([expect.arrayContaining(write.map((file) => file.path))]);
    for (const file of write) expect(readFileSync(join(workDir, file.path), 'utf8')).toBe(file.content);
    expect(existsSync(join(workDir, 'src/App.css'))).toBe(false);
  });

  it('reads what a notice names as it is now: a newer write that raced is applied, and its own notice then changes nothing', async () => {
    const { live, workDir, projectId, reads } = await startLiveFiles();
    const path = 'src/raced.js';
    const first = { path, content: 'export const v = 1;\n' };
    const second = { path, content: 'export const v = 2;\n' };
    await writeOnly(projectId, first);
    await writeOnly(projectId, second);
    // The first write's notice arrives after the second write committed.
    let applied = once(live, 'applied');
    await changes.append({ type: 'put', projectId, path, ...notice(first), at: Date.now() });
    await applied;
    expect(readFileSync(join(workDir, path), 'utf8')).toBe(second.content);
    expect(reads).toEqual([[path]]);
    applied = once(live, 'applied');
    await changes.append({ type: 'put', projectId, path, ...notice(second), at: Date.now() });
    await applied;
    expect(readFileSync(join(workDir, path), 'utf8')).toBe(second.content);
    // Its ETag is what this machine wrote: nothing is read again.
    expect(reads).toEqual([[path]]);

    // A notice of a file removed since: the file goes (its delete notice follows).
    expect(existsSync(join(workDir, 'src/App.css'))).toBe(true);
    await changeOnly(projectId, { write: [], delete: ['src/App.css'] });
    applied = once(live, 'applied');
    await changes.append({ type: 'batch', projectId, write: [{ path: 'src/App.css', etag: fileEtag({ content: 'old' }), bytes: 3 }], delete: [], at: Date.now() });
    await applied;
    expect(existsSync(join(workDir, 'src/App.css'))).toBe(false);
  });

  it('writes binary files byte for byte: from the first load (no rewrite on resync) and from a raw PUT', async () => {
    const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==', 'base64');
    const everyByte = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const { live, workDir, projectId, firstResync } = await startLiveFiles([{ path: 'src/assets/hero.png', content: png.toString('base64'), encoding: 'base64' }]);
    expect(firstResync).toEqual({ written: [], removed: [] });
    expect(readFileSync(join(workDir, 'src/assets/hero.png')).equals(png)).toBe(true);

    const applied = once(live, 'applied');
    const res = await fetch(`${base}/v1/projects/${projectId}/files/src/assets/hero.png`, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: everyByte });
    expect(res.status).toBe(200);
    await applied;
    expect(readFileSync(join(workDir, 'src/assets/hero.png')).equals(everyByte)).toBe(true);
  });

  it('seeded with the cursor its files are current to, follows from there: no resync, and a change made after the cursor arrives', async () => {
    const { live: first, projectId, sessionId } = await startLiveFiles();
    await first.stop();
    // As a pooled machine gets them with its claim: the cursor first, then the files.
    const cursor = await changes.cursor(projectId);
    const files = await store.listProjectFiles(projectId);
    // Made between the snapshot and the connection: it must still arrive.
    await writeAndNotice(projectId, { path: 'src/after-cursor.js', content: 'export const late = true;\n' });
    const token = createMachineToken({ sessionId, projectId }, config.MACHINE_TOKEN_SECRET, 600);
    const parent = mkdtempSync(join(tmpdir(), 'pc-live-'));
    dirs.push(parent);
    const workDir = join(parent, 'work');
    await writeProjectFiles(workDir, files);
    const filesUrl = `${base}/v1/machines/${sessionId}/files`;
    const live = new LiveFiles({
      url: fileChangesUrlOf({}, filesUrl)!,
      token,
      workDir,
      loadSnapshot: () => fetchProjectFiles(filesUrl, token),
      loadFiles: (paths) => fetchProjectFilesAt(filesUrl, token, paths),
      health: { filesLoaded: true },
      logger: createLogger('live-files-test', 'silent'),
    });
    running.push(live);
    let resyncs = 0;
    live.on('resynced', () => resyncs++);
    const applied = once<{ path: string }>(live, 'applied');
    live.seed(files, cursor);
    live.start();
    expect(await applied).toMatchObject({ path: 'src/after-cursor.js' });
    expect(readFileSync(join(workDir, 'src/after-cursor.js'), 'utf8')).toBe('export const late = true;\n');
    expect(resyncs).toBe(0);
  });

  it('drops a connection that sends nothing for idleTimeoutMs and opens another', async () => {
    let connections = 0;
    const silent = createServer((_req, res) => {
      connections++;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const workDir = mkdtempSync(join(tmpdir(), 'pc-live-'));
    dirs.push(workDir);
    try {
      const live = new LiveFiles({
        url: `http://127.0.0.1:${(silent.address() as AddressInfo).port}/file-changes`,
        token: 't',
        workDir,
        loadSnapshot: async () => [],
        loadFiles: async () => [],
        health: { filesLoaded: true },
        logger: createLogger('live-files-test', 'silent'),
        backoff: { initialMs: 20, maxMs: 40 },
        idleTimeoutMs: 150,
      });
      running.push(live);
      const reconnecting = once(live, 'reconnecting', 5_000);
      live.start();
      await reconnecting;
      await new Promise((r) => setTimeout(r, 300));
      expect(connections).toBeGreaterThanOrEqual(2);
      await live.stop();
    } finally {
      silent.closeAllConnections();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  it('reconnects after the api restarts and resumes after the last change it applied', async () => {
    const { live, workDir, projectId } = await startLiveFiles();
    let resyncs = 0;
    live.on('resynced', () => resyncs++);
    let applied = once(live, 'applied');
    await api$('PUT', `/v1/projects/${projectId}/files/a.txt`, { content: 'before' });
    await applied;

    const reconnecting = once(live, 'reconnecting');
    await stopProcess(api!.child);
    await reconnecting;
    // Written while the api is down, straight to the stream, as a second api replica would.
    await writeAndNotice(projectId, { path: 'b.txt', content: 'while down' });
    const connected = once(live, 'connected', 30_000);
    applied = once(live, 'applied', 30_000);
    await startApi();
    await connected;
    expect(await applied).toMatchObject({ path: 'b.txt' });
    expect(readFileSync(join(workDir, 'b.txt'), 'utf8')).toBe('while down');
    expect(resyncs).toBe(0);

    applied = once(live, 'applied');
    await api$('PUT', `/v1/projects/${projectId}/files/a.txt`, { content: 'after' });
    await applied;
    expect(readFileSync(join(workDir, 'a.txt'), 'utf8')).toBe('after');
  });

  it('refuses an unsafe change, reports data failing, then resyncs and recovers', async () => {
    const { live, health, parent, projectId, workDir } = await startLiveFiles();
    const resynced = once<{ written: string[] }>(live, 'resynced');
    // Past the api's checks, straight into the stream: the container must still refuse it.
    await changes.append({ type: 'put', projectId, path: '../evil.js', ...notice({ content: 'escaped' }), at: Date.now() });
    await new Promise<void>((resolve) => {
      const check = () => (health.dataError ? resolve() : setTimeout(check, 10));
      check();
    });
    expect(health.dataError).toContain('".." segment');
    expect((await healthReport('x', health)).data).toBe('failing');
    expect(existsSync(join(parent, 'evil.js'))).toBe(false);
    await resynced;
    expect(health.dataError).toBeUndefined();
    const applied = once(live, 'applied');
    await api$('PUT', `/v1/projects/${projectId}/files/ok.txt`, { content: 'fine' });
    await applied;
    expect(readFileSync(join(workDir, 'ok.txt'), 'utf8')).toBe('fine');
  });

  it('reports the session failing when the api says it ended, and stops', async () => {
    const { live, health, sessionId } = await startLiveFiles();
    const ended = once<string>(live, 'ended');
    await store.transition(sessionId, 'ending');
    await events.append({ type: 'ending', sessionId, at: Date.now(), reason: 'expired' });
    // Announced at once; the api's row check at a heartbeat would say so too ("session ending (its row)").
    expect(await ended).toMatch(/^session end/);
    expect(health.sessionEnded).toBe(true);
    const report = await healthReport(sessionId, { ...health, devServerCheck: undefined });
    expect(report).toMatchObject({ status: 'failing', session: 'failing', data: 'ok', sessionId });
  });

  it('takes a 410 on connect as the end of the session', async () => {
    const { live, health, sessionId } = await startLiveFiles();
    await live.stop();
    await store.transition(sessionId, 'ending');
    const again = new LiveFiles({ ...(live as unknown as { options: ConstructorParameters<typeof LiveFiles>[0] }).options, health });
    running.push(again);
    const ended = once<string>(again, 'ended');
    again.start();
    expect(await ended).toContain('410');
    expect(health.sessionEnded).toBe(true);
  });
});

