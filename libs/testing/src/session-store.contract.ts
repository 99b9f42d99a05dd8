import { randomUUID } from 'node:crypto';
import { createHash } from 'node:crypto';
import { fileEtag, type ProjectFile } from '@velocity/contracts';
import { type NewSession, type Page, type PageCursor, type PreviewSession, type ProjectFileLimits, type SessionStore } from '@velocity/session-store';

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
    /** One file written, as a single-file PUT does: `created` or `updated` with its sizes and ETag, or the store's reason it was not. */
    async function putFile(projectId: string, file: ProjectFile, limits: ProjectFileLimits) {
      const result = await store.applyProjectFiles(projectId, { write: [file], delete: [] }, limits);
      if (result.outcome !== 'applied') return result;
      const [written] = result.written;
      return { outcome: written.created ? 'created' : 'updated', fileBytes: written.fileBytes, fileCount: result.fileCount, projectBytes: result.projectBytes, etag: written.etag };
    }

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
        expect(project).toEqual({ id, name: 'My app', templateType: 'vue', ownerId: null, createdAt: expect.any(String), updatedAt: expect.any(String) });
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

      it('createProjectWithinQuota: of 8 concurrent creates of one owner at a limit of 3, exactly 3 insert; other owners are apart', async () => {
        const ownerId = randomUUID();
        const other = randomUUID();
        const ask = (owner: string, max: number | null, i: number) => store.createProjectWithinQuota({ name: `q${i}`, templateType: 'vue', ownerId: owner }, max);
        const results = await Promise.all([...Array.from({ length: 8 }, (_, i) => ask(ownerId, 3, i)), ask(other, 3, 99)]);
        const mine = results.slice(0, 8);
        expect(mine.filter((r) => r.outcome === 'created')).toHaveLength(3);
        expect(mine.filter((r) => r.outcome === 'over-quota')).toEqual(Array.from({ length: 5 }, () => ({ outcome: 'over-quota', count: 3, limit: 3 })));
        expect(results[8]).toMatchObject({ outcome: 'created', count: 1, project: { ownerId: other } });
        const created = mine.flatMap((r) => (r.outcome === 'created' ? [r] : []));
        expect(created.map((r) => r.count).sort()).toEqual([1, 2, 3]);
        for (const r of created) {
          expect(r.project).toEqual({ id: expect.any(String), name: expect.stringMatching(/^q\d$/), templateType: 'vue', ownerId, createdAt: expect.any(String), updatedAt: expect.any(String) });
          expect(await store.getProject(r.project.id)).toEqual(r.project);
        }
        expect((await store.listProjects({ ownerId, limit: 100 })).items).toHaveLength(3);
        // Without a limit (null) it inserts always.
        expect(await ask(ownerId, null, 9)).toMatchObject({ outcome: 'created', count: 4 });
      });

      it('getProject returns null for an unknown or invalid id', async () => {
        expect(await store.getProject(randomUUID())).toBeNull();
        expect(await store.getProject('not-a-uuid')).toBeNull();
        expect(await store.getProject('')).toBeNull();
        expect(await store.getProject("1' or '1'='1")).toBeNull();
      });
    });

    describe('listings', () => {
      /** Every page of a listing, following `next`. */
      async function allPages<T>(list: (before?: PageCursor) => Promise<Page<T>>): Promise<T[][]> {
        const pages: T[][] = [];
        let before: PageCursor | undefined;
        do {
          const page = await list(before);
          pages.push(page.items);
          before = page.next ?? undefined;
        } while (before);
        return pages;
      }

      it("listProjects pages through one owner's projects, most recently changed first, each once", async () => {
        const ownerId = randomUUID();
        const made = [];
        for (let i = 0; i < 5; i++) made.push(await store.createProject({ name: `p${i}`, templateType: 'react', ownerId }));
        await store.createProject({ name: 'someone else', templateType: 'react', ownerId: randomUUID() });
        // A file written to the oldest makes it the most recently changed.
        await putFile(made[0].id, { path: 'a.txt', content: 'a' }, { maxFiles: 10, maxFileBytes: 100, maxProjectBytes: 1000 });
        const pages = await allPages((before) => store.listProjects({ ownerId, limit: 2, before }));
        expect(pages.map((page) => page.length)).toEqual([2, 2, 1]);
        expect(pages.flat().map((p) => p.name)).toEqual(['p0', 'p4', 'p3', 'p2', 'p1']);
        const all = pages.flat();
        expect(Date.parse(all[0].updatedAt)).toBeGreaterThanOrEqual(Date.parse(all[1].updatedAt));
        const without = await store.listProjects({ ownerId, limit: 10, except: made[0].id });
        expect(without).toEqual({ items: all.slice(1), next: null });
      });

      it("listSessions pages through one owner's sessions, newest first; liveOnly leaves out ended and failed ones", async () => {
        const ownerId = randomUUID();
        const project = await store.createProject({ name: 'listed', templateType: 'react', ownerId });
        const ids: string[] = [];
        for (let i = 0; i < 4; i++) {
          const id = randomUUID();
          const created = await store.createSessionWithinQuota({ id, projectId: project.id, ownerId, tier: 'free', resourceLimits: { cpus: 1, memoryMb: 512 } }, null);
          expect(created.outcome).toBe('created');
          ids.push(id);
        }
        await store.createSessionWithinQuota({ id: randomUUID(), projectId: project.id, ownerId: randomUUID(), tier: 'free', resourceLimits: { cpus: 1, memoryMb: 512 } }, null);
        expect(await store.transition(ids[1], 'error', { errorMessage: 'failed on purpose' })).not.toBeNull();
        const all = await allPages((before) => store.listSessions({ ownerId, liveOnly: false, limit: 3, before }));
        expect(all.map((page) => page.length)).toEqual([3, 1]);
        expect(all.flat().map((s) => s.id)).toEqual([...ids].reverse());
        const live = await store.listSessions({ ownerId, liveOnly: true, limit: 10 });
        expect(live.items.map((s) => s.id)).toEqual([ids[3], ids[2], ids[0]]);
        expect(live.next).toBeNull();
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

      it('listProjectFiles with paths gives those of them that exist, with their content', async () => {
        const project = await newProject();
        await store.seedProjectFiles(project.id, files);
        const wanted = ['src/main.tsx', 'package.json', 'package-lock.json'];
        expect(await store.listProjectFiles(project.id, wanted)).toEqual(byPath(files.filter((f) => wanted.includes(f.path))));
        expect(await store.listProjectFiles(project.id, [])).toEqual([]);
        expect(await store.listProjectFiles(project.id, ['nope'])).toEqual([]);
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

    describe('binary project files', () => {
      /** Every byte value, so no encoding step can lose or change one. */
      const everyByte = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      const binary = (path: string, bytes: Buffer): ProjectFile => ({ path, content: bytes.toString('base64'), encoding: 'base64' });
      const roomy = { maxFiles: 10, maxFileBytes: 10_000, maxProjectBytes: 100_000 };

      it('a write stores bytes 0..255 and listProjectFiles gives them back exactly, beside text', async () => {
        const project = await newProject();
        expect(await putFile(project.id, binary('img/all.bin', everyByte), roomy)).toEqual({
          outcome: 'created',
          fileBytes: 256,
          fileCount: 1,
          projectBytes: 256,
          etag: createHash('sha256').update(everyByte).digest('hex'),
        });
        expect(await putFile(project.id, { path: 'a.txt', content: 'é' }, roomy)).toMatchObject({ outcome: 'created', fileBytes: 2, projectBytes: 258 });
        const listed = await store.listProjectFiles(project.id);
        expect(listed).toEqual([{ path: 'a.txt', content: 'é' }, binary('img/all.bin', everyByte)]);
        expect(Buffer.from(listed[1].content, 'base64').equals(everyByte)).toBe(true);
        expect(listed[0]).not.toHaveProperty('encoding');
        expect(await store.listProjectFilePaths(project.id)).toEqual([
          { path: 'a.txt', bytes: 2, binary: false, updatedAt: expect.any(String) },
          { path: 'img/all.bin', bytes: 256, binary: true, updatedAt: expect.any(String) },
        ]);
      });

      it('a path may change from text to bytes and back; an empty binary file stays binary', async () => {
        const project = await newProject();
        await putFile(project.id, { path: 'f', content: 'text' }, roomy);
        expect(await putFile(project.id, binary('f', Buffer.from([0, 1])), roomy)).toMatchObject({ outcome: 'updated', fileBytes: 2, projectBytes: 2 });
        expect(await store.listProjectFiles(project.id)).toEqual([binary('f', Buffer.from([0, 1]))]);
        expect(await putFile(project.id, { path: 'f', content: 'back' }, roomy)).toMatchObject({ outcome: 'updated', fileBytes: 4, projectBytes: 4 });
        expect(await store.listProjectFiles(project.id)).toEqual([{ path: 'f', content: 'back' }]);
        await putFile(project.id, binary('empty', Buffer.alloc(0)), roomy);
        expect((await store.listProjectFiles(project.id))[0]).toEqual({ path: 'empty', content: '', encoding: 'base64' });
        expect((await store.listProjectFilePaths(project.id))[0]).toMatchObject({ path: 'empty', bytes: 0, binary: true });
      });

      it('seedProjectFiles stores binary files too', async () => {
        const project = await newProject();
        const seed = [...files, binary('src/assets/hero.png', everyByte)];
        expect(await store.seedProjectFiles(project.id, seed)).toBe(seed.length);
        expect(await store.listProjectFiles(project.id)).toEqual(byPath(seed));
      });

      it('the limits count real bytes, not base64 characters', async () => {
        const project = await newProject();
        // 256 bytes are 344 base64 characters.
        const limits = { maxFiles: 5, maxFileBytes: 256, maxProjectBytes: 300 };
        expect(await putFile(project.id, binary('a.bin', everyByte), limits)).toMatchObject({ outcome: 'created', fileBytes: 256, projectBytes: 256 });
        expect(await putFile(project.id, binary('b.bin', Buffer.alloc(257)), limits)).toMatchObject({ outcome: 'file-too-large', fileBytes: 257 });
        expect(await putFile(project.id, binary('b.bin', Buffer.alloc(45)), limits)).toMatchObject({ outcome: 'project-too-large', projectBytes: 301 });
        expect(await putFile(project.id, binary('b.bin', Buffer.alloc(44)), limits)).toMatchObject({ outcome: 'created', fileBytes: 44, projectBytes: 300 });
        // Replacing a binary file counts its old bytes out.
        expect(await putFile(project.id, { path: 'a.bin', content: 'x'.repeat(200) }, limits)).toMatchObject({ outcome: 'updated', projectBytes: 244 });
        expect(await store.listProjectFilePaths(project.id)).toEqual([
          { path: 'a.bin', bytes: 200, binary: false, updatedAt: expect.any(String) },
          { path: 'b.bin', bytes: 44, binary: true, updatedAt: expect.any(String) },
        ]);
      });

      it('a write refuses content that is not base64 for a binary file, and writes nothing', async () => {
        const project = await newProject();
        await expect(putFile(project.id, { path: 'x.bin', content: 'not base64!', encoding: 'base64' }, roomy)).rejects.toThrow(/base64/);
        expect(await store.listProjectFiles(project.id)).toEqual([]);
      });
    });

    describe('changes of several files', () => {
      const limits = { maxFiles: 4, maxFileBytes: 100, maxProjectBytes: 200 };

      it('writes and removes files together, with each ETag the hex SHA-256 of the bytes', async () => {
        const project = await newProject();
        await putFile(project.id, { path: 'old.txt', content: 'old' }, limits);
        const result = await store.applyProjectFiles(
          project.id,
          { write: [{ path: 'b.txt', content: 'é' }, { path: 'a.bin', content: Buffer.from([0, 255]).toString('base64'), encoding: 'base64' }], delete: ['old.txt'] },
          limits,
        );
        expect(result).toEqual({
          outcome: 'applied',
          fileCount: 2,
          projectBytes: 4,
          written: [
            { path: 'a.bin', created: true, fileBytes: 2, etag: fileEtag({ content: Buffer.from([0, 255]).toString('base64'), encoding: 'base64' }) },
            { path: 'b.txt', created: true, fileBytes: 2, etag: fileEtag({ content: 'é' }) },
          ],
          deleted: ['old.txt'],
        });
        expect((await store.listProjectFiles(project.id)).map((f) => f.path)).toEqual(['a.bin', 'b.txt']);
      });

      it('changes nothing when one part fails: a precondition, a missing file to remove, a limit', async () => {
        const project = await newProject();
        const first = await putFile(project.id, { path: 'a.txt', content: 'a' }, limits);
        const etag = (first as { etag: string }).etag;
        const before = await store.listProjectFiles(project.id);
        const attempts: [Parameters<SessionStore['applyProjectFiles']>[1], object][] = [
          [{ write: [{ path: 'a.txt', content: 'b' }, { path: 'n.txt', content: 'n' }], delete: [], expected: { 'a.txt': 'f'.repeat(64) } }, { outcome: 'precondition-failed', path: 'a.txt', etag }],
          [{ write: [{ path: 'n.txt', content: 'n' }], delete: [], expected: { 'n.txt': '*' } }, { outcome: 'precondition-failed', path: 'n.txt', etag: null }],
          [{ write: [{ path: 'n.txt', content: 'n' }], delete: ['gone.txt'] }, { outcome: 'no-file', path: 'gone.txt' }],
          [{ write: ['1', '2', '3', '4'].map((n) => ({ path: `${n}.txt`, content: n })), delete: [] }, { outcome: 'too-many-files', fileCount: 1 }],
          [{ write: [{ path: 'n.txt', content: 'x'.repeat(100) }, { path: 'm.txt', content: 'x'.repeat(100) }], delete: [] }, { outcome: 'project-too-large', projectBytes: 201 }],
          [{ write: [{ path: 'n.txt', content: 'x'.repeat(101) }], delete: [] }, { outcome: 'file-too-large', path: 'n.txt', fileBytes: 101 }],
        ];
        for (const [change, outcome] of attempts) {
          expect(await store.applyProjectFiles(project.id, change, limits)).toEqual(outcome);
          expect(await store.listProjectFiles(project.id)).toEqual(before);
        }
        // The right ETag (and `*` for a file that exists) lets the change through; removing files makes room.
        const ok = await store.applyProjectFiles(project.id, { write: [{ path: 'a.txt', content: 'b' }], delete: [], expected: { 'a.txt': etag } }, limits);
        expect(ok).toMatchObject({ outcome: 'applied', written: [{ path: 'a.txt', created: false, etag: fileEtag({ content: 'b' }) }] });
        expect(await store.applyProjectFiles(project.id, { write: [], delete: ['a.txt'], expected: { 'a.txt': '*' } }, limits)).toMatchObject({ outcome: 'applied', fileCount: 0 });
      });

      it('of two changes expecting one ETag, exactly one is applied', async () => {
        const project = await newProject();
        const { etag } = (await putFile(project.id, { path: 'a.txt', content: 'a' }, limits)) as { etag: string };
        const results = await Promise.all(
          ['x', 'y', 'z'].map((content) => store.applyProjectFiles(project.id, { write: [{ path: 'a.txt', content }], delete: [], expected: { 'a.txt': etag } }, limits)),
        );
        expect(results.filter((r) => r.outcome === 'applied')).toHaveLength(1);
        expect(results.filter((r) => r.outcome === 'precondition-failed')).toHaveLength(2);
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
          ownerId: null,
          status: 'creating',
          tier: 'pro',
          resourceLimits: { cpus: 2, memoryMb: 2048 },
          containerId: null,
          containerUrl: null,
          routeId: null,
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

      it('finds a session by the route id recorded with its machine', async () => {
        const session = await newSession();
        const routeId = randomUUID();
        expect(await store.getSessionByRoute(routeId)).toBeNull();
        const started = await store.transition(session.id, 'starting', { containerId: 'm-r', containerUrl: 'http://127.0.0.1:1', routeId });
        expect(started?.routeId).toBe(routeId);
        expect((await store.getSessionByRoute(routeId))?.id).toBe(session.id);
        expect((await store.getSessionsByRouteIds([routeId, randomUUID(), 'nope'])).map((s) => s.id)).toEqual([session.id]);
        expect(await store.getSessionByRoute('not-a-uuid')).toBeNull();
      });

      it('a session still starting may record a replacement machine', async () => {
        const session = await newSession();
        await store.transition(session.id, 'starting', { containerId: 'machine-1', containerUrl: 'http://a' });
        const replaced = await store.transition(session.id, 'starting', { containerId: 'machine-2', containerUrl: 'http://b' });
        expect(replaced).toMatchObject({ status: 'starting', containerId: 'machine-2', containerUrl: 'http://b' });
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
        await store.transition(session.id, 'starting', { containerId: 'machine' });
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, i) => store.transition(session.id, 'active', { previewUrl: `http://x/${i}/`, ttlSeconds: 60 })),
        );
        const winners = results.filter((r): r is PreviewSession => r !== null);
        expect(winners).toHaveLength(1);
        expect(await store.getSession(session.id)).toEqual(winners[0]);
      });
    });

    describe('cleanup queries', () => {
      /** An active session whose expires_at is `ttlSeconds` from now (negative: already past). */
      async function activeSession(ttlSeconds = 60, overrides: Partial<NewSession> = {}): Promise<PreviewSession> {
        const session = await newSession(overrides);
        await store.transition(session.id, 'starting', { containerId: `machine-${session.id}`, containerUrl: 'http://127.0.0.1:1' });
        return (await store.transition(session.id, 'active', { previewUrl: 'http://p/', ttlSeconds }))!;
      }
      const ids = (list: PreviewSession[]) => list.map((s) => s.id);
      const far = () => new Date(Date.now() + 3600_000);

      it('listExpiredSessions returns active sessions past expires_at, earliest first, never a future or inactive one', async () => {
        const past = await activeSession(-120);
        const pastLater = await activeSession(-60);
        const future = await activeSession(600);
        const ended = await activeSession(-90);
        await store.transition(ended.id, 'ending');
        const list = await store.listExpiredSessions(new Date(), 1000);
        expect(ids(list)).toEqual(expect.arrayContaining([past.id, pastLater.id]));
        expect(ids(list)).not.toContain(future.id);
        expect(ids(list)).not.toContain(ended.id);
        expect(list.every((s) => s.status === 'active' && ms(s.expiresAt) <= Date.now())).toBe(true);
        expect(ids(list).indexOf(past.id)).toBeLessThan(ids(list).indexOf(pastLater.id));
        const expiries = list.map((s) => ms(s.expiresAt));
        expect(expiries).toEqual([...expiries].sort((a, b) => a - b));
      });

      it('listExpiredSessions respects the limit and never runs ahead of the database clock', async () => {
        await activeSession(-30);
        await activeSession(-30);
        expect((await store.listExpiredSessions(new Date(), 1)).length).toBe(1);
        const soon = await activeSession(300);
        expect(ids(await store.listExpiredSessions(far(), 1000))).not.toContain(soon.id);
      });

      it('recordActivity stores the time for an active session, never backwards nor in the future', async () => {
        const session = await activeSession(600);
        const t1 = new Date(Date.now() - 60_000);
        expect(await store.recordActivity(session.id, t1)).toBe(t1.toISOString());
        expect(await store.recordActivity(session.id, new Date(t1.getTime() - 30_000))).toBe(t1.toISOString());
        const capped = await store.recordActivity(session.id, far());
        expect(ms(capped)).toBeLessThanOrEqual(Date.now() + 5_000);
        expect(ms(capped)).toBeGreaterThan(t1.getTime());
      });

      it('recordActivity returns null for a session that is not active, unknown or invalid', async () => {
        const creating = await newSession();
        expect(await store.recordActivity(creating.id, new Date())).toBeNull();
        const ending = await activeSession(60);
        await store.transition(ending.id, 'ending');
        expect(await store.recordActivity(ending.id, new Date())).toBeNull();
        expect(await store.recordActivity(randomUUID(), new Date())).toBeNull();
        expect(await store.recordActivity('nope', new Date())).toBeNull();
      });

      it('listIdleSessions finds active sessions of the tier last seen before the cutoff', async () => {
        const idle = await activeSession(600);
        await store.recordActivity(idle.id, new Date(Date.now() - 3600_000));
        const busy = await activeSession(600);
        await store.recordActivity(busy.id, new Date());
        const proIdle = await activeSession(600, { tier: 'pro' });
        await store.recordActivity(proIdle.id, new Date(Date.now() - 3600_000));
        const neverReported = await activeSession(600);

        const cutoff = new Date(Date.now() - 1800_000);
        const free = ids(await store.listIdleSessions('free', cutoff, 1000));
        expect(free).toContain(idle.id);
        expect(free).not.toContain(busy.id);
        expect(free).not.toContain(proIdle.id);
        // Without reports, the idle clock starts at activation.
        expect(free).not.toContain(neverReported.id);
        expect(ids(await store.listIdleSessions('free', new Date(Date.now() + 60_000), 1000))).toContain(neverReported.id);
        expect(ids(await store.listIdleSessions('pro', cutoff, 1000))).toContain(proIdle.id);

        await store.transition(idle.id, 'ending');
        expect(ids(await store.listIdleSessions('free', cutoff, 1000))).not.toContain(idle.id);
      });

      it('listStuckSessions and failStuckSession: provisioning rows created before the cutoff become error once', async () => {
        const queued = await newSession({ status: 'queued' });
        const creating = await newSession();
        const starting = await newSession();
        await store.transition(starting.id, 'starting', { containerId: 'm-stuck' });
        const active = await activeSession(60);

        const notYet = new Date(Date.now() - 3600_000);
        expect(ids(await store.listStuckSessions(notYet, 1000))).not.toContain(queued.id);
        expect(await store.failStuckSession(queued.id, notYet)).toBeNull();

        const cutoff = far();
        const stuck = ids(await store.listStuckSessions(cutoff, 1000));
        expect(stuck).toEqual(expect.arrayContaining([queued.id, creating.id, starting.id]));
        expect(stuck).not.toContain(active.id);

        const failed = await store.failStuckSession(starting.id, cutoff);
        expect(failed).toMatchObject({ status: 'error', errorMessage: 'provisioning timed out at starting', containerId: 'm-stuck' });
        expect(failed!.endedAt).not.toBeNull();
        expect(await store.failStuckSession(starting.id, cutoff)).toBeNull();
        expect((await store.failStuckSession(queued.id, cutoff))?.errorMessage).toBe('provisioning timed out at queued');
        expect(await store.failStuckSession(active.id, cutoff)).toBeNull();
        expect(await store.failStuckSession('nope', cutoff)).toBeNull();
        expect(ids(await store.listStuckSessions(cutoff, 1000))).not.toContain(starting.id);
      });

      it('concurrent failStuckSession calls: exactly one wins', async () => {
        const session = await newSession();
        const results = await Promise.all(Array.from({ length: 5 }, () => store.failStuckSession(session.id, far())));
        expect(results.filter((r) => r !== null)).toHaveLength(1);
      });

      it('listProvisioningSessions pages through provisioning rows created after a time, each once', async () => {
        const since = new Date(Date.now() - 5_000);
        const mine = new Set<string>();
        for (let i = 0; i < 5; i += 1) mine.add((await newSession({ status: i % 2 ? 'queued' : 'creating' })).id);
        const active = await activeSession(60);
        const seen: string[] = [];
        let cursor: { createdAt: string; id: string } | undefined;
        for (let pages = 0; pages < 1000; pages += 1) {
          const page = await store.listProvisioningSessions(since, 2, cursor);
          seen.push(...ids(page));
          if (page.length < 2) break;
          cursor = { createdAt: page[page.length - 1].createdAt, id: page[page.length - 1].id };
        }
        expect(new Set(seen).size).toBe(seen.length);
        for (const id of mine) expect(seen).toContain(id);
        expect(seen).not.toContain(active.id);
        expect(ids(await store.listProvisioningSessions(new Date(Date.now() + 60_000), 100))).toEqual([]);
      });

      it('listActiveSessions pages through active rows by id, each once', async () => {
        const mine = [await activeSession(60), await activeSession(60), await activeSession(60)].map((s) => s.id);
        const creating = await newSession();
        const seen: string[] = [];
        let afterId: string | undefined;
        for (let pages = 0; pages < 10_000; pages += 1) {
          const page = await store.listActiveSessions(2, afterId);
          seen.push(...ids(page));
          if (page.length < 2) break;
          afterId = page[page.length - 1].id;
        }
        expect(new Set(seen).size).toBe(seen.length);
        expect(seen).toEqual(expect.arrayContaining(mine));
        expect(seen).not.toContain(creating.id);
      });

      it('getSessionsByIds returns the rows that exist and ignores unknown or invalid ids', async () => {
        const a = await newSession();
        const b = await activeSession(60);
        const rows = await store.getSessionsByIds([a.id, b.id, randomUUID(), 'nope', a.id]);
        expect(ids(rows).sort()).toEqual([a.id, b.id].sort());
        expect(rows.find((r) => r.id === b.id)).toEqual(await store.getSession(b.id));
        expect(await store.getSessionsByIds([])).toEqual([]);
      });

      it('extendSession moves expires_at by the seconds, up to activation + the maximum', async () => {
        const session = await activeSession(60);
        const extended = await store.extendSession(session.id, 120, 600);
        expect(extended.outcome).toBe('extended');
        if (extended.outcome !== 'extended') return;
        expect(ms(extended.session.expiresAt) - ms(session.expiresAt)).toBe(120_000);
        // activated_at is the activation statement's now(), as updated_at was then.
        expect(ms(extended.maxUntil)).toBe(ms(session.updatedAt) + 600_000);
        expect(await store.getSession(session.id)).toEqual(extended.session);

        const beyond = await store.extendSession(session.id, 500, 600);
        expect(beyond).toMatchObject({ outcome: 'beyond-max', maxUntil: extended.maxUntil });
        expect((await store.getSession(session.id))?.expiresAt).toBe(extended.session.expiresAt);
      });

      it('extendSession refuses a session that is not active or already expired, and reports a missing one', async () => {
        const creating = await newSession();
        expect(await store.extendSession(creating.id, 60, 600)).toMatchObject({ outcome: 'not-active' });
        const expired = await activeSession(-5);
        expect(await store.extendSession(expired.id, 60, 600)).toMatchObject({ outcome: 'expired' });
        expect((await store.getSession(expired.id))?.expiresAt).toBe(expired.expiresAt);
        expect(await store.extendSession(randomUUID(), 60, 600)).toEqual({ outcome: 'not-found' });
        expect(await store.extendSession('nope', 60, 600)).toEqual({ outcome: 'not-found' });
      });

      it('concurrent extensions add up and never pass the maximum', async () => {
        const session = await activeSession(60);
        // 60 s + 10 x 100 s would be 1060 s; the maximum allows 600 s from activation.
        const results = await Promise.all(Array.from({ length: 10 }, () => store.extendSession(session.id, 100, 600)));
        const extendedCount = results.filter((r) => r.outcome === 'extended').length;
        expect(extendedCount).toBe(5);
        expect(results.filter((r) => r.outcome === 'beyond-max')).toHaveLength(5);
        const row = await store.getSession(session.id);
        expect(ms(row!.expiresAt) - ms(session.expiresAt)).toBe(500_000);
      });

      it('listStaleEndingSessions and claimStaleEnding: a session left ending is claimed by one caller', async () => {
        const ending = await activeSession(60);
        await store.transition(ending.id, 'ending');
        const active = await activeSession(60);
        await new Promise((r) => setTimeout(r, 20));
        const cutoff = new Date();
        expect(ids(await store.listStaleEndingSessions(new Date(Date.now() - 3600_000), 1000))).not.toContain(ending.id);
        const stale = ids(await store.listStaleEndingSessions(cutoff, 1000));
        expect(stale).toContain(ending.id);
        expect(stale).not.toContain(active.id);

        const claims = await Promise.all(Array.from({ length: 5 }, () => store.claimStaleEnding(ending.id, cutoff)));
        const winners = claims.filter((c): c is PreviewSession => c !== null);
        expect(winners).toHaveLength(1);
        expect(winners[0]).toMatchObject({ id: ending.id, status: 'ending' });
        expect(ms(winners[0].updatedAt)).toBeGreaterThanOrEqual(cutoff.getTime());
        expect(await store.claimStaleEnding(active.id, cutoff)).toBeNull();
        expect(await store.claimStaleEnding('nope', cutoff)).toBeNull();
      });
    });
  });
}
