import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mkdir as makeDir, mkdtemp, open, readFile as read, readdir as list, rm as remove, stat as statOf, writeFile as write } from 'node:fs/promises';
import { MACHINE_VITE_CACHE_DIR } from '@velocity/contracts';
import { fetchProjectFiles, FilesError, linkNodeModules, syncProjectFiles, writeProjectFiles, writtenContents, type ProjectFile } from '../src/files';

/** Every byte value, so no step may lose or change one. */
const everyByte = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
const binary = (path: string, bytes: Buffer): ProjectFile => ({ path, content: bytes.toString('base64'), encoding: 'base64' });
import { UnsafePathError } from '../src/path-safety';

describe('writeProjectFiles', () => {
  let parent: string;
  let work: string;
  beforeEach(() => {
    parent = mkdtempSync(join(tmpdir(), 'pc-files-'));
    work = join(parent, 'work');
  });
  afterEach(() => rmSync(parent, { recursive: true, force: true }));

  it('writes nested files under the work dir', async () => {
    const count = await writeProjectFiles(work, [
      { path: 'index.html', content: '<html></html>' },
      { path: './src/components/Button.jsx', content: 'export default 1' },
    ]);
    expect(count).toBe(2);
    expect(readFileSync(join(work, 'src/components/Button.jsx'), 'utf8')).toBe('export default 1');
  });

  it('writes a binary file byte for byte, and text as UTF-8', async () => {
    await writeProjectFiles(work, [binary('src/assets/all.bin', everyByte), { path: 'a.txt', content: 'é' }, binary('empty.bin', Buffer.alloc(0))]);
    expect(readFileSync(join(work, 'src/assets/all.bin')).equals(everyByte)).toBe(true);
    expect(readFileSync(join(work, 'a.txt')).equals(Buffer.from([0xc3, 0xa9]))).toBe(true);
    expect(readFileSync(join(work, 'empty.bin'))).toHaveLength(0);
  });

  it('refuses the whole list when one path is unsafe, before writing anything', async () => {
    await expect(
      writeProjectFiles(work, [
        { path: 'index.html', content: 'ok' },
        { path: '../evil.js', content: 'evil' },
      ]),
    ).rejects.toThrow(UnsafePathError);
    expect(existsSync(join(parent, 'evil.js'))).toBe(false);
    expect(existsSync(join(work, 'index.html'))).toBe(false);
  });

  it('refuses duplicate paths after normalisation', async () => {
    await expect(writeProjectFiles(work, [{ path: 'a.js', content: '1' }, { path: './a.js', content: '2' }])).rejects.toThrow('duplicate');
  });

  it('does not follow a symlinked folder out of the work dir', async () => {
    const outside = join(parent, 'outside');
    mkdirSync(outside);
    mkdirSync(work);
    symlinkSync(outside, join(work, 'linked'));
    await expect(writeProjectFiles(work, [{ path: 'linked/x.js', content: 'x' }])).rejects.toThrow('outside');
    expect(existsSync(join(outside, 'x.js'))).toBe(false);
  });

  it('replaces a symlinked file instead of writing through it', async () => {
    const outsideFile = join(parent, 'target.txt');
    mkdirSync(work);
    symlinkSync(outsideFile, join(work, 'a.txt'));
    await writeProjectFiles(work, [{ path: 'a.txt', content: 'mine' }]);
    expect(existsSync(outsideFile)).toBe(false);
    expect(lstatSync(join(work, 'a.txt')).isSymbolicLink()).toBe(false);
  });

  it('replaces a file whole: a reader that opened it before reads all of the old bytes, never a truncated file', async () => {
    await writeProjectFiles(work, [{ path: 'src/main.ts', content: 'old content' }]);
    const opened = await open(join(work, 'src/main.ts'));
    try {
      const sizeWhenOpened = (await opened.stat()).size;
      await writeProjectFiles(work, [{ path: 'src/main.ts', content: 'export const x: number = ;\n' }]);
      const { bytesRead } = await opened.read(Buffer.alloc(64), 0, 64, 0);
      expect({ sizeWhenOpened, bytesRead }).toEqual({ sizeWhenOpened: 11, bytesRead: 11 });
    } finally {
      await opened.close();
    }
    expect(readFileSync(join(work, 'src/main.ts'), 'utf8')).toBe('export const x: number = ;\n');
    // Written aside under Vite's cache folder, and nothing left there.
    expect(await list(join(work, MACHINE_VITE_CACHE_DIR, 'incoming'))).toEqual([]);
  });

  it('leaves nothing aside when a write fails', async () => {
    mkdirSync(join(work, 'taken'), { recursive: true });
    await expect(writeProjectFiles(work, [{ path: 'taken', content: 'a file where a folder is' }])).rejects.toThrow();
    expect(await list(join(work, MACHINE_VITE_CACHE_DIR, 'incoming'))).toEqual([]);
  });
});

describe('linkNodeModules', () => {
  let work: string;
  beforeEach(() => (work = mkdtempSync(join(tmpdir(), 'pc-link-'))));
  afterEach(() => rmSync(work, { recursive: true, force: true }));

  it('links node_modules to the real shared folder, idempotently', async () => {
    const shared = join(__dirname, '../../../node_modules');
    const target = await linkNodeModules(work, shared);
    expect(target).toBe(realpathSync(shared));
    expect(readlinkSync(join(work, 'node_modules'))).toBe(target);
    await expect(linkNodeModules(work, shared)).resolves.toBe(target);
    expect(existsSync(join(work, 'node_modules/react/package.json'))).toBe(true);
  });

  it('refuses to replace a real node_modules folder', async () => {
    mkdirSync(join(work, 'node_modules'));
    await expect(linkNodeModules(work, join(__dirname, '../../../node_modules'))).rejects.toThrow('not a symlink');
  });
});

describe('fetchProjectFiles', () => {
  let server: Server;
  let base: string;
  let hits: Record<string, number>;
  let auth: string[];

  beforeAll(async () => {
    server = createServer((req, res) => {
      hits[req.url!] = (hits[req.url!] ?? 0) + 1;
      auth.push(String(req.headers.authorization));
      const send = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(typeof body === 'string' ? body : JSON.stringify(body));
      };
      if (req.url === '/ok') return send(200, { files: [{ path: 'a.js', content: '1' }] });
      if (req.url === '/binary') return send(200, { files: [binary('hero.png', everyByte)] });
      if (req.url === '/bad-base64') return send(200, { files: [{ path: 'hero.png', content: '<not base64>', encoding: 'base64' }] });
      if (req.url === '/flaky') return hits[req.url] < 3 ? send(503, 'busy') : send(200, { files: [] });
      if (req.url === '/down') return send(500, 'boom');
      if (req.url === '/denied') return send(401, { error: 'bad token' });
      if (req.url === '/malformed') return send(200, { nope: true });
      if (req.url === '/slow') return void setTimeout(() => send(200, { files: [] }), 1_000);
      send(404, {});
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  beforeEach(() => {
    hits = {};
    auth = [];
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const fast = { backoffMs: 10, timeoutMs: 300 };

  it('sends the bearer token and returns the files', async () => {
    await expect(fetchProjectFiles(`${base}/ok`, 'tok', fast)).resolves.toEqual([{ path: 'a.js', content: '1' }]);
    expect(auth).toEqual(['Bearer tok']);
  });

  it('takes binary files as base64 with encoding, and refuses content that is not base64', async () => {
    await expect(fetchProjectFiles(`${base}/binary`, 'tok', fast)).resolves.toEqual([binary('hero.png', everyByte)]);
    await expect(fetchProjectFiles(`${base}/bad-base64`, 'tok', fast)).rejects.toThrow(/base64/);
    expect(hits['/bad-base64']).toBe(1);
  });

  it('retries 5xx until it succeeds', async () => {
    await expect(fetchProjectFiles(`${base}/flaky`, 'tok', fast)).resolves.toEqual([]);
    expect(hits['/flaky']).toBe(3);
  });

  it('gives up after the attempts with an error naming the URL', async () => {
    await expect(fetchProjectFiles(`${base}/down`, 'tok', { ...fast, attempts: 3 })).rejects.toThrow(`${base}/down`);
    expect(hits['/down']).toBe(3);
  });

  it('does not retry a 401 or a malformed body', async () => {
    await expect(fetchProjectFiles(`${base}/denied`, 'tok', fast)).rejects.toThrow(/answered 401/);
    expect(hits['/denied']).toBe(1);
    await expect(fetchProjectFiles(`${base}/malformed`, 'tok', fast)).rejects.toThrow(FilesError);
    expect(hits['/malformed']).toBe(1);
  });

  it('times out each attempt and retries', async () => {
    await expect(fetchProjectFiles(`${base}/slow`, 'tok', { ...fast, attempts: 2, timeoutMs: 100 })).rejects.toThrow(/timed out after 100 ms/);
    expect(hits['/slow']).toBe(2);
  });

  it('retries network errors', async () => {
    const closed = `http://127.0.0.1:9/files`;
    await expect(fetchProjectFiles(closed, 'tok', { ...fast, attempts: 2 })).rejects.toThrow(closed);
  });
});

describe('syncProjectFiles (a pooled machine claimed for a project)', () => {
  it('compares with what the machine wrote, when given, instead of reading each file back', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vp-sync-'));
    try {
      await writeProjectFiles(dir, [
        { path: 'index.html', content: 'template' },
        { path: 'src/App.jsx', content: 'template' },
      ]);
      // Changed behind its back: given what it wrote, the machine does not read this back and leaves it.
      await write(join(dir, 'index.html'), 'changed on disk');
      const written = new Map([
        ['index.html', 'template'],
        ['src/App.jsx', 'template'],
      ]);
      const result = await syncProjectFiles(dir, [{ path: 'index.html', content: 'template' }, { path: './src/App.jsx', content: 'project' }], written);
      expect(result).toEqual({ written: ['src/App.jsx'], removed: [] });
      expect(await read(join(dir, 'index.html'), 'utf8')).toBe('changed on disk');
      expect(await read(join(dir, 'src', 'App.jsx'), 'utf8')).toBe('project');
      // Still the whole folder: a file that is not in the list goes, and a bad path refuses the list.
      await write(join(dir, 'stray.txt'), 'x');
      expect((await syncProjectFiles(dir, [{ path: 'src/App.jsx', content: 'project' }], new Map([['src/App.jsx', 'project']]))).removed.sort()).toEqual(['index.html', 'stray.txt']);
      await expect(syncProjectFiles(dir, [{ path: '../evil.js', content: 'x' }], written)).rejects.toThrow();
    } finally {
      await remove(dir, { recursive: true, force: true });
    }
  });

  it('compares bytes on disk: a changed binary file is written, an unchanged one (or text with the same bytes) is not', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vp-sync-'));
    try {
      await writeProjectFiles(dir, [binary('a.bin', everyByte), binary('b.bin', everyByte), { path: 'c.txt', content: 'same' }]);
      const changed = Buffer.from(everyByte);
      changed[200] ^= 0xff;
      const result = await syncProjectFiles(dir, [binary('a.bin', everyByte), binary('b.bin', changed), binary('c.txt', Buffer.from('same'))]);
      expect(result).toEqual({ written: ['b.bin'], removed: [] });
      expect((await read(join(dir, 'b.bin'))).equals(changed)).toBe(true);
      expect((await read(join(dir, 'a.bin'))).equals(everyByte)).toBe(true);
    } finally {
      await remove(dir, { recursive: true, force: true });
    }
  });

  it('given what it wrote (writtenContents), tells a changed binary file and never takes text for bytes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vp-sync-'));
    try {
      const template = [binary('hero.png', everyByte), binary('logo.bin', Buffer.from('logo'))];
      await writeProjectFiles(dir, template);
      const changed = Buffer.from(everyByte.subarray(1));
      // The project's logo.bin is text, and its text is the template's base64 for that path: the same `content`, other bytes.
      const project = [binary('hero.png', changed), { path: 'logo.bin', content: template[1].content }];
      const result = await syncProjectFiles(dir, project, writtenContents(template));
      expect(result.written.sort()).toEqual(['hero.png', 'logo.bin']);
      expect((await read(join(dir, 'hero.png'))).equals(changed)).toBe(true);
      expect(await read(join(dir, 'logo.bin'), 'utf8')).toBe(template[1].content);
      expect((await syncProjectFiles(dir, project, writtenContents(project))).written).toEqual([]);
    } finally {
      await remove(dir, { recursive: true, force: true });
    }
  });

  it('writes only what differs, removes the rest, and leaves node_modules alone', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vp-sync-'));
    try {
      await makeDir(join(dir, 'src'));
      await makeDir(join(dir, 'node_modules', 'react'), { recursive: true });
      await write(join(dir, 'index.html'), 'same');
      await write(join(dir, 'src', 'App.css'), 'template only');
      await write(join(dir, 'src', 'App.jsx'), 'template');
      await write(join(dir, 'node_modules', 'react', 'index.js'), 'dep');
      const before = (await statOf(join(dir, 'index.html'))).mtimeMs;
      await new Promise((r) => setTimeout(r, 20));
      const result = await syncProjectFiles(dir, [
        { path: 'index.html', content: 'same' },
        { path: 'src/App.jsx', content: 'project' },
        { path: 'src/new.js', content: 'new' },
      ]);
      expect(result.written.sort()).toEqual(['src/App.jsx', 'src/new.js']);
      expect(result.removed).toEqual(['src/App.css']);
      expect((await statOf(join(dir, 'index.html'))).mtimeMs).toBe(before);
      expect(await read(join(dir, 'src', 'App.jsx'), 'utf8')).toBe('project');
      expect((await list(join(dir, 'src'))).sort()).toEqual(['App.jsx', 'new.js']);
      expect(await read(join(dir, 'node_modules', 'react', 'index.js'), 'utf8')).toBe('dep');
      await expect(syncProjectFiles(dir, [{ path: '../evil.js', content: 'x' }])).rejects.toThrow();
    } finally {
      await remove(dir, { recursive: true, force: true });
    }
  });
});
