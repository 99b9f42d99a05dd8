import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { samples, uploadProject } from '@velocity/testing';
import { WarmPool } from '@velocity/machines';
import { loadConfig, sleep, type SessionEvent } from '@velocity/contracts';
import { eventsUntilTerminal, postSession, startSystem, type RunningSystem } from '../src/system';

/**
 * The warm pool for real: pre-started preview machines on their template,
 * claimed by a session, loaded with that project's files without a Vite
 * restart, never handed to a second session, and not mistaken for orphans.
 */
const TOKEN = randomBytes(24).toString('base64url');
/** A small React app of its own, its heading given. */
const reactApp = (heading: string) => ({
  'index.html': '<!doctype html><div id="root"></div><script type="module" src="/src/main.jsx"></script>',
  'src/main.jsx': "import App from './App.jsx';\nimport { createRoot } from 'react-dom/client';\ncreateRoot(document.getElementById('root')).render(<App />);\n",
  'src/App.jsx': `export default function App() { return <h1>${heading}</h1>; }\n`,
});
/** Requests the api answered on the machines' files route so far (its request histogram's count). */
const filesRequests = async (api: string) => {
  const text = await (await fetch(`${api}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
  return samples(text, 'vp_http_request_seconds_count', { route: '/v1/machines/:sessionId/files' }).reduce((sum, s) => sum + s.value, 0);
};

describe('warm pool', () => {
  let system: RunningSystem;
  let redis: Redis;
  let pool: WarmPool;

  beforeAll(async () => {
    system = await startSystem({ OPERATOR_TOKEN: TOKEN, WARM_POOL: 'react:2-2', POOL_REFILL_EVERY_MS: '500', CLEANUP_SWEEP_EVERY_MS: '500', ORPHAN_GRACE_MS: '1000' });
    const config = loadConfig(system.env);
    redis = new Redis(config.REDIS_URL);
    pool = new WarmPool(redis, config.QUEUE_PREFIX);
    await until(async () => (await pool.size({ templateType: 'react', tier: 'free' })) === 2, 'two pooled react machines', 90_000);
  }, 120_000);

  afterAll(async () => {
    redis?.disconnect();
    await system?.stop();
  }, 60_000);

  it('serves a claimed session the new project files, not the template, and refills', async () => {
    const api = system.baseUrl;
    const project = await projectWith(api, reactApp('Straight from the pool'));
    const pooledBefore = (await pool.members()).map((m) => m.machineId);
    const filesRequestsBefore = await filesRequests(api);

    const { sessionId, ready } = await pooledSession(api, project.id);
    const session = await fetch(`${api}/v1/sessions/${sessionId}`).then((r) => r.json());
    expect(session.status).toBe('active');
    // The URL carries the pooled machine's route id, and it serves this project's files.
    const app = await fetch(`${ready.previewUrl}src/App.jsx`).then((r) => r.text());
    expect(app).toContain('Straight from the pool');
    expect(app).not.toContain('count is');
    // The template's stylesheet is gone from the machine (Vite answers its page fallback instead).
    expect(await fetch(`${ready.previewUrl}src/App.css`).then((r) => r.text())).not.toContain('.app {');
    const claimed = (await system.machines.list()).find((m) => new URL(ready.previewUrl).hostname.startsWith(`${m.sessionId}.`));
    expect(claimed && pooledBefore).toContain(claimed!.id);
    // It waited at niceness 10 and serves a session now at 0 (the provider raised it: the machine may not).
    const [claimedProcess] = (await system.machines.processes()).filter((p) => p.sessionId === claimed!.sessionId);
    expect(niceOf(claimedProcess.pid)).toBe(0);
    const waiting = (await system.machines.processes()).find((p) => (pooledBefore as string[]).includes(`local-${p.sessionId}`) && p.sessionId !== claimed!.sessionId);
    if (waiting) expect(niceOf(waiting.pid)).toBe(10);

    // The files came with the claim, current to a file-changes cursor: the machine loaded nothing from the api (no second load either) ...
    expect(await filesRequests(api)).toBe(filesRequestsBefore);
    // ... and a change made now reaches it.
    expect(await putFile(api, project.id, 'src/App.jsx', 'export default function App() { return <h1>Edited after the claim</h1>; }\n')).toBe(200);
    await until(async () => (await fetch(`${ready.previewUrl}src/App.jsx`).then((r) => r.text())).includes('Edited after the claim'), 'the edit served by the claimed machine', 15_000);

    // The pool refills to its size with a new machine; the claimed one is not in it.
    await until(async () => (await pool.size({ templateType: 'react', tier: 'free' })) === 2, 'the pool refilled', 90_000);
    expect((await pool.members()).map((m) => m.machineId)).not.toContain(claimed!.id);

    // Stopping the session destroys its machine: used machines are never returned.
    expect((await fetch(`${api}/v1/sessions/${sessionId}`, { method: 'DELETE' })).status).toBe(202);
    await until(async () => !(await system.machines.list()).some((m) => m.id === claimed!.id), 'the used machine destroyed', 20_000);
    expect((await pool.members()).map((m) => m.machineId)).not.toContain(claimed!.id);
  }, 180_000);

  it('keeps the machines the pool knows, and destroys one it does not as an orphan', async () => {
    await until(async () => (await pool.size({ templateType: 'react', tier: 'free' })) === 2, 'the pool full again', 90_000);
    const members = await pool.members();
    expect(members.filter((m) => m.state === 'ready')).toHaveLength(2);
    // Several sweeps pass with a 1 s orphan grace: the pool's machines stay.
    await sleep(3000);
    const alive = (await system.machines.list()).map((m) => m.id);
    for (const m of members) expect(alive).toContain(m.machineId);
    // A machine the pool has forgotten is nobody's: cleanup destroys it.
    const forgotten = members[0];
    await pool.remove(forgotten);
    await until(async () => !(await system.machines.list()).some((m) => m.id === forgotten.machineId), 'the forgotten machine destroyed', 30_000);
  }, 90_000);

  it('leaves a project over 2 MB out of the claim: the machine fetches its files itself and serves them', async () => {
    const api = system.baseUrl;
    // Three data files of 0.9 MB each (one file may be at most 1 MB): 2.7 MB in all.
    const data = Object.fromEntries(['a', 'b', 'c'].map((name) => [`public/${name}.txt`, name.repeat(900 * 1024)]));
    const project = await projectWith(api, { ...data, ...reactApp('Big project from the pool') });
    await until(async () => (await pool.size({ templateType: 'react', tier: 'free' })) >= 1, 'a pooled machine', 90_000);
    const before = await filesRequests(api);

    const { sessionId, ready } = await pooledSession(api, project.id);
    expect(await filesRequests(api)).toBeGreaterThan(before);
    expect(await fetch(`${ready.previewUrl}src/App.jsx`).then((r) => r.text())).toContain('Big project from the pool');
    expect((await fetch(`${ready.previewUrl}a.txt`).then((r) => r.text())).length).toBe(900 * 1024);
    expect((await fetch(`${api}/v1/sessions/${sessionId}`, { method: 'DELETE' })).status).toBe(202);
  }, 120_000);
});

/** A new React project holding exactly these files. */
async function projectWith(api: string, files: Record<string, string>): Promise<{ id: string }> {
  const id = await uploadProject(api, 'pool test', 'react', Object.entries(files).map(([path, content]) => ({ path, content: Buffer.from(content) })));
  return { id };
}

const putFile = (api: string, projectId: string, path: string, content: string) =>
  fetch(`${api}/v1/projects/${projectId}/files/${path}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ content }) }).then((r) => r.status);

/** A session of the project, followed to its end, which must be `ready` from a pooled machine. */
async function pooledSession(api: string, projectId: string) {
  const created = await postSession(api, { projectId });
  const { events } = await eventsUntilTerminal(api, created.body.sessionId, 30_000);
  const ready = events.at(-1) as Extract<SessionEvent, { type: 'ready' }>;
  expect(ready).toMatchObject({ type: 'ready', pooled: true });
  return { sessionId: created.body.sessionId, ready };
}

async function until(check: () => Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(200);
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** A process's niceness, field 19 of /proc/<pid>/stat (after the command's closing parenthesis). */
function niceOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
}
