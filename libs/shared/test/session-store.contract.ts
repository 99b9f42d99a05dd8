import { randomUUID } from 'node:crypto';
import type { NewSession, PreviewSession, ProjectFile, SessionStore } from '../src/session-store';

/**
 * The behaviour every SessionStore adapter must have. Run it from an adapter's
 * spec: `sessionStoreContract('PostgresSessionStore', async () => new PostgresSessionStore(url))`.
 * Every test uses fresh ids, so tests are independent of each other and of
 * other data in the store.
 */
export function sessionStoreContract(name: string, makeStore: () => Promise<SessionStore>): void {
  describe(`SessionStore contract: ${name}`, () => {
    let store: SessionStore;

    beforeAll(async () => {
      store = await makeStore();
    });

    afterAll(async () => {
      await store?.close();
    });

    const files: ProjectFile[] = [
      { path: 'package.json', content: '{"name":"app"}' },
      { path: 'src/main.tsx', content: 'import "./App";\n' },
      { path: 'index.html', content: '<div id="root"></div>' },
      { path: 'src/App.tsx', content: 'export default () => "héllo ✓";\n' },
    ];
    const byPath = (list: ProjectFile[]) => [...list].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));

    async function newProject() {
      return store.ensureProject({ id: randomUUID(), name: 'Contract project', templateType: 'react' });
    }

    async function newSession(overrides: Partial<NewSession> = {}): Promise<PreviewSession> {
      const project = await newProject();
      return store.createSession({
        id: randomUUID(),
        projectId: project.id,
        tier: 'free',
        resourceLimits: { cpus: 1, memoryMb: 512 },
        status: 'creating',
        ...overrides,
      });
    }

    const ms = (iso: string | null) => (iso === null ? NaN : Date.parse(iso));

    describe('projects', () => {
      it('ensureProject creates a project and returns it', async () => {
        const id = randomUUID();
        const before = Date.now();
        const project = await store.ensureProject({ id, name: 'My app', templateType: 'vue' });
        expect(project).toEqual({ id, name: 'My app', templateType: 'vue', ownerId: null, createdAt: expect.any(String) });
        expect(Math.abs(ms(project.createdAt) - before)).toBeLessThan(60_000);
        expect(await store.getProject(id)).toEqual(project);
      });

      it('ensureProject is idempotent and keeps the first values', async () => {
        const id = randomUUID();
        const first = await store.ensureProject({ id, name: 'First', templateType: 'react' });
        const second = await store.ensureProject({ id, name: 'Second', templateType: 'vue' });
        expect(second).toEqual(first);
        expect(second.name).toBe('First');
        expect(await store.getProject(id)).toEqual(first);
      });

      it('concurrent ensureProject calls all return the same project', async () => {
        const id = randomUUID();
        const results = await Promise.all(
          Array.from({ length: 5 }, (_, i) => store.ensureProject({ id, name: `P${i}`, templateType: 'react' })),
        );
        expect(new Set(results.map((p) => JSON.stringify(p))).size).toBe(1);
      });

      it('getProject returns null for an unknown or invalid id', async () => {
        expect(await store.getProject(randomUUID())).toBeNull();
        expect(await store.getProject('not-a-uuid')).toBeNull();
        expect(await store.getProject('')).toBeNull();
        expect(await store.getProject("1' or '1'='1")).toBeNull();
      });
    });

    describe('project files', () => {
      it('seedProjectFiles inserts the files once, then returns 0', async () => {
        const project = await newProject();
        expect(await store.listProjectFiles(project.id)).toEqual([]);
        expect(await store.seedProjectFiles(project.id, files)).toBe(files.length);
        expect(await store.listProjectFiles(project.id)).toEqual(byPath(files));

        expect(await store.seedProjectFiles(project.id, [{ path: 'other.txt', content: 'x' }])).toBe(0);
        expect(await store.listProjectFiles(project.id)).toEqual(byPath(files));
      });

      it('listProjectFiles orders by path', async () => {
        const project = await newProject();
        await store.seedProjectFiles(project.id, files);
        expect((await store.listProjectFiles(project.id)).map((f) => f.path)).toEqual([
          'index.html',
          'package.json',
          'src/App.tsx',
          'src/main.tsx',
        ]);
      });

      it('concurrent seeds insert the files exactly once', async () => {
        const project = await newProject();
        const results = await Promise.all(Array.from({ length: 5 }, () => store.seedProjectFiles(project.id, files)));
        expect([...results].sort()).toEqual([0, 0, 0, 0, files.length]);
        expect(await store.listProjectFiles(project.id)).toEqual(byPath(files));
      });

      it('concurrent seeds with different file sets: exactly one set is stored, whole', async () => {
        const project = await newProject();
        const sets = Array.from({ length: 5 }, (_, i) =>
          Array.from({ length: 50 }, (_, j) => ({ path: `seed-${i}/file-${String(j).padStart(2, '0')}.txt`, content: `${i}:${j}` })),
        );
        const results = await Promise.all(sets.map((set) => store.seedProjectFiles(project.id, set)));
        const winner = results.findIndex((n) => n > 0);
        expect(results.filter((n) => n > 0)).toEqual([50]);
        expect(await store.listProjectFiles(project.id)).toEqual(sets[winner]);
      });

      it('keeps the files of each project apart', async () => {
        const a = await newProject();
        const b = await newProject();
        await store.seedProjectFiles(a.id, files);
        expect(await store.seedProjectFiles(b.id, [{ path: 'b.txt', content: 'b' }])).toBe(1);
        expect(await store.listProjectFiles(b.id)).toEqual([{ path: 'b.txt', content: 'b' }]);
        expect(await store.listProjectFiles(a.id)).toHaveLength(files.length);
      });

      it('seedProjectFiles rejects for a missing project and inserts nothing', async () => {
        const id = randomUUID();
        await expect(store.seedProjectFiles(id, files)).rejects.toThrow(/does not exist/);
        expect(await store.listProjectFiles(id)).toEqual([]);
      });

      it('listProjectFiles returns [] for an unknown or invalid id', async () => {
        expect(await store.listProjectFiles(randomUUID())).toEqual([]);
        expect(await store.listProjectFiles('nope')).toEqual([]);
      });
    });

    describe('sessions', () => {
      it('createSession inserts a creating row and getSession reads it back', async () => {
        const project = await newProject();
        const id = randomUUID();
        const session = await store.createSession({
          id,
          projectId: project.id,
          tier: 'pro',
          resourceLimits: { cpus: 2, memoryMb: 2048 },
          status: 'creating',
        });
        expect(session).toEqual({
          id,
          projectId: project.id,
          status: 'creating',
          tier: 'pro',
          resourceLimits: { cpus: 2, memoryMb: 2048 },
          containerId: null,
          containerUrl: null,
          previewUrl: null,
          errorMessage: null,
          errorStep: null,
          expiresAt: null,
          endedAt: null,
          createdAt: expect.any(String),
          updatedAt: expect.any(String),
        });
        expect(new Date(session.createdAt).toISOString()).toBe(session.createdAt);
        expect(await store.getSession(id)).toEqual(session);
      });

      it('createSession is idempotent: the same id returns the first row unchanged', async () => {
        const first = await newSession({ tier: 'free', resourceLimits: { cpus: 1, memoryMb: 512 } });
        const second = await store.createSession({
          id: first.id,
          projectId: first.projectId,
          tier: 'pro',
          resourceLimits: { cpus: 4, memoryMb: 4096 },
          status: 'queued',
        });
        expect(second).toEqual(first);
        expect(await store.getSession(first.id)).toEqual(first);
      });

      it('createSession records a request as queued, which may only move to creating or error', async () => {
        const session = await newSession({ status: 'queued' });
        expect(session.status).toBe('queued');
        expect(await store.transition(session.id, 'starting')).toBeNull();
        expect((await store.transition(session.id, 'creating'))?.status).toBe('creating');
      });

      it('createSession does not reset a session that moved on', async () => {
        const session = await newSession();
        const started = await store.transition(session.id, 'starting', { containerId: 'm-1' });
        expect(started?.status).toBe('starting');
        const again = await store.createSession({
          id: session.id,
          projectId: session.projectId,
          tier: session.tier,
          resourceLimits: session.resourceLimits,
          status: 'creating',
        });
        expect(again).toEqual(started);
      });

      it('createSession rejects for a missing project', async () => {
        const id = randomUUID();
        await expect(
          store.createSession({ id, projectId: randomUUID(), tier: 'free', resourceLimits: { cpus: 1, memoryMb: 512 }, status: 'queued' }),
        ).rejects.toThrow();
        expect(await store.getSession(id)).toBeNull();
      });

      it('getSession returns null for an unknown or invalid id', async () => {
        expect(await store.getSession(randomUUID())).toBeNull();
        expect(await store.getSession('not-a-uuid')).toBeNull();
        expect(await store.getSession('')).toBeNull();
        expect(await store.getSession('550e8400-e29b-41d4-a716-44665544000Z')).toBeNull();
      });
    });

    describe('transition', () => {
      it('creating -> starting sets the patch fields and keeps the rest', async () => {
        const session = await newSession();
        const updated = await store.transition(session.id, 'starting', {
          containerId: 'machine-1',
          containerUrl: 'http://127.0.0.1:41234',
        });
        expect(updated).toEqual({
          ...session,
          status: 'starting',
          containerId: 'machine-1',
          containerUrl: 'http://127.0.0.1:41234',
          updatedAt: expect.any(String),
        });
        expect(ms(updated!.updatedAt)).toBeGreaterThanOrEqual(ms(session.updatedAt));
        expect(await store.getSession(session.id)).toEqual(updated);
      });

      it('a later patch keeps fields it does not name', async () => {
        const session = await newSession();
        await store.transition(session.id, 'starting', { containerId: 'machine-2', containerUrl: 'http://c' });
        const active = await store.transition(session.id, 'active', { previewUrl: 'http://p/', ttlSeconds: 60 });
        expect(active).toMatchObject({ containerId: 'machine-2', containerUrl: 'http://c', previewUrl: 'http://p/' });
      });

      it('starting -> active sets expires_at to now + ttl', async () => {
        const session = await newSession();
        await store.transition(session.id, 'starting');
        const before = Date.now();
        const active = await store.transition(session.id, 'active', { previewUrl: 'http://preview/p/x/', ttlSeconds: 1800 });
        expect(active).not.toBeNull();
        expect(active!.status).toBe('active');
        expect(active!.previewUrl).toBe('http://preview/p/x/');
        // Same statement, same now(): exact relative to updatedAt, and near the client's clock.
        expect(ms(active!.expiresAt) - ms(active!.updatedAt)).toBe(1800 * 1000);
        expect(Math.abs(ms(active!.expiresAt) - (before + 1800 * 1000))).toBeLessThan(30_000);
        expect(active!.endedAt).toBeNull();
      });

      it('active -> ending -> ended sets ended_at', async () => {
        const session = await newSession();
        await store.transition(session.id, 'starting');
        await store.transition(session.id, 'active', { ttlSeconds: 60 });
        const ending = await store.transition(session.id, 'ending');
        expect(ending?.status).toBe('ending');
        expect(ending?.endedAt).toBeNull();
        const ended = await store.transition(session.id, 'ended', { ended: true });
        expect(ended?.status).toBe('ended');
        expect(ended?.endedAt).toBe(ended?.updatedAt);
        expect(ended?.expiresAt).toBe(ending?.expiresAt);
      });

      it('a forbidden move (active -> creating) returns null and leaves the row unchanged', async () => {
        const session = await newSession();
        await store.transition(session.id, 'starting', { containerId: 'm' });
        const active = await store.transition(session.id, 'active', { ttlSeconds: 60 });
        expect(active?.status).toBe('active');

        expect(await store.transition(session.id, 'creating', { containerId: 'other', ttlSeconds: 1 })).toBeNull();
        expect(await store.getSession(session.id)).toEqual(active);
      });

      it('skipping a state (creating -> active) returns null', async () => {
        const session = await newSession();
        expect(await store.transition(session.id, 'active', { ttlSeconds: 60 })).toBeNull();
        expect(await store.getSession(session.id)).toEqual(session);
      });

      it.each(['creating', 'starting'] as const)('error is allowed from %s and records the error', async (from) => {
        const session = await newSession();
        if (from === 'starting') await store.transition(session.id, 'starting');
        const failed = await store.transition(session.id, 'error', {
          errorMessage: 'Vite exited with code 1',
          errorStep: 'verify',
          ended: true,
        });
        expect(failed).toMatchObject({ status: 'error', errorMessage: 'Vite exited with code 1', errorStep: 'verify' });
        expect(failed!.endedAt).not.toBeNull();
      });

      it('error is not allowed from active, nor after error', async () => {
        const session = await newSession();
        await store.transition(session.id, 'starting');
        const active = await store.transition(session.id, 'active', { ttlSeconds: 60 });
        expect(await store.transition(session.id, 'error', { errorMessage: 'late' })).toBeNull();
        expect(await store.getSession(session.id)).toEqual(active);

        const other = await newSession();
        const failed = await store.transition(other.id, 'error', { errorMessage: 'first' });
        expect(failed?.status).toBe('error');
        expect(await store.transition(other.id, 'error', { errorMessage: 'second' })).toBeNull();
        expect((await store.getSession(other.id))?.errorMessage).toBe('first');
      });

      it('returns null for a missing or invalid session id', async () => {
        expect(await store.transition(randomUUID(), 'starting')).toBeNull();
        expect(await store.transition('not-a-uuid', 'starting')).toBeNull();
      });

      it('concurrent transitions of one row: exactly one wins', async () => {
        const session = await newSession();
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, i) => store.transition(session.id, 'starting', { containerId: `machine-${i}` })),
        );
        const winners = results.filter((r): r is PreviewSession => r !== null);
        expect(winners).toHaveLength(1);
        expect(await store.getSession(session.id)).toEqual(winners[0]);
      });
    });
  });
}
