import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { createViteTemplateFiles, fixtureProjectFiles, runNpm, startTestRegistry, storageDirOf, testRegistryDir, writeProjectFiles, type ProjectFile, type RunningRegistry } from '../src/test-registry';

/**
 * The offline test registry serves users' dependencies with no request to the
 * public registry: every npm here goes through a proxy that only records and
 * refuses (HTTPS_PROXY), with NO_PROXY letting only 127.0.0.1 through.
 */
jest.setTimeout(240_000);

let registry: RunningRegistry;
let work: string;
let trap: Awaited<ReturnType<typeof trapProxy>>;
let storageBefore: Map<string, string>;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'vp-test-registry-spec-'));
  trap = await trapProxy();
  storageBefore = snapshot(storageDirOf(testRegistryDir()));
  registry = await startTestRegistry();
});

afterAll(async () => {
  await registry?.stop();
  await trap?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

function npm(args: string[], cwd: string, registryUrl = registry.url) {
  const proxy = { HTTPS_PROXY: trap.url, HTTP_PROXY: trap.url, https_proxy: trap.url, http_proxy: trap.url, NO_PROXY: '127.0.0.1', no_proxy: '127.0.0.1' };
  return runNpm(args, { cwd, registry: registryUrl, cache: join(cwd, '..', 'cache'), env: proxy });
}

async function install(name: string, files: ProjectFile[], command: 'install' | 'ci' = 'install') {
  const project = join(work, name, 'project');
  writeProjectFiles(project, files);
  const result = await npm([command], project);
  return { project, result };
}

const version = (project: string, pkg: string): string => JSON.parse(readFileSync(join(project, 'node_modules', pkg, 'package.json'), 'utf8')).version;
const major = (project: string, pkg: string) => Number(version(project, pkg).split('.')[0]);
const installed = (project: string, pkg: string) => existsSync(join(project, 'node_modules', pkg, 'package.json'));

it('starts offline and serves the prepared packages with its own tarball URLs', async () => {
  const vite = await (await fetch(new URL('vite', registry.url))).json();
  const versions = Object.values(vite.versions as Record<string, { dist: { tarball: string } }>);
  expect(versions.length).toBeGreaterThan(0);
  expect(versions.every((v) => v.dist.tarball.startsWith(`${registry.url}vite/-/`))).toBe(true);
  expect((await fetch(new URL('velocity-no-such-package-9d1c', registry.url))).status).toBe(404);
});

it('generated-app: npm install gets Vite 8, React 19, Tailwind 4 and the linux-x64-gnu native packages', async () => {
  const { project, result } = await install('generated-app', await fixtureProjectFiles('generated-app'));
  expect(result.stderr).not.toMatch(/npm error/);
  expect(result.code).toBe(0);
  expect(major(project, 'vite')).toBe(8);
  expect(major(project, 'react')).toBe(19);
  expect(major(project, 'tailwindcss')).toBe(4);
  for (const pkg of ['@vitejs/plugin-react', '@tailwindcss/vite', 'react-router-dom', 'lucide-react', 'zustand', '@tsconfig/vite-react']) {
    expect(installed(project, pkg)).toBe(true);
  }
  expect(installed(project, '@tailwindcss/oxide-linux-x64-gnu')).toBe(true);
  expect(installed(project, '@rolldown/binding-linux-x64-gnu')).toBe(true);
  // Other platforms' packuments are served too: the lockfile npm wrote lists them, as it would online.
  expect(readFileSync(join(project, 'package-lock.json'), 'utf8')).toContain('"node_modules/@tailwindcss/oxide-darwin-arm64"');
});

it('vite-5: npm install gets Vite 5 with its esbuild and Rollup binaries', async () => {
  const { project, result } = await install('vite-5', await fixtureProjectFiles('vite-5'));
  expect(result.code).toBe(0);
  expect(major(project, 'vite')).toBe(5);
  expect(installed(project, '@esbuild/linux-x64')).toBe(true);
  expect(installed(project, '@rollup/rollup-linux-x64-gnu')).toBe(true);
});

it('create-vite react-ts: the template as create-vite writes it installs, TypeScript 7 and oxlint with their native packages', async () => {
  const files = await createViteTemplateFiles('react-ts');
  const paths = files.map((f) => f.path);
  expect(paths).toEqual(expect.arrayContaining(['.gitignore', '.oxlintrc.json', 'package.json', 'vite.config.ts', 'src/assets/hero.png']));
  expect(paths.filter((p) => p.startsWith('_'))).toEqual([]);
  const hero = files.find((f) => f.path === 'src/assets/hero.png')!.content;
  expect(hero.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));

  const { project, result } = await install('react-ts', files);
  expect(result.code).toBe(0);
  expect(major(project, 'vite')).toBe(8);
  expect(major(project, 'typescript')).toBe(7);
  expect(installed(project, '@typescript/typescript-linux-x64')).toBe(true);
  expect(installed(project, '@oxlint/binding-linux-x64-gnu')).toBe(true);
});

it('npm-lockfile: npm ci installs exactly the lockfile, its registry.npmjs.org URLs fetched from the local registry', async () => {
  const files = await fixtureProjectFiles('npm-lockfile');
  const lock = JSON.parse(files.find((f) => f.path === 'package-lock.json')!.content.toString());
  const locked = lock.packages['node_modules/vite'];
  expect(locked.resolved).toBe(`https://registry.npmjs.org/vite/-/vite-${locked.version}.tgz`);

  const { project, result } = await install('npm-lockfile', files, 'ci');
  expect(result.code).toBe(0);
  for (const pkg of ['vite', 'nanoid', 'typescript', 'esbuild', 'rollup']) {
    expect(version(project, pkg)).toBe(lock.packages[`node_modules/${pkg}`].version);
  }
  expect(installed(project, '@esbuild/linux-x64')).toBe(true);
  // npm swapped registry.npmjs.org for --registry (replace-registry-host): Verdaccio served the tarball.
  expect(readFileSync(registry.logFile, 'utf8')).toContain(`GET /vite/-/vite-${locked.version}.tgz`);
});

it('missing-package: npm install fails with E404 naming the package', async () => {
  const { result } = await install('missing-package', await fixtureProjectFiles('missing-package'));
  expect(result.code).not.toBe(0);
  expect(result.stderr).toMatch(/npm error code E404/);
  expect(result.stderr).toContain(`404 Not Found - GET ${registry.url}velocity-no-such-package-9d1c`);
  expect(result.stderr).toContain(`'velocity-no-such-package-9d1c@^1.0.0' could not be found`);
});

it('sent nothing to the public registry, and the proxy trap would have caught it', async () => {
  expect(trap.attempts).toEqual([]);
  expect(readFileSync(registry.logFile, 'utf8')).not.toContain('registry.npmjs.org');
  // The trap works: npm asked for the public registry goes to the proxy, which refuses.
  const control = join(work, 'control', 'project');
  writeProjectFiles(control, [{ path: 'package.json', content: Buffer.from('{"name":"control","version":"0.0.0"}') }]);
  const result = await npm(['view', 'left-pad', 'version', '--fetch-retries=0'], control, 'https://registry.npmjs.org/');
  expect(result.code).not.toBe(0);
  expect(trap.attempts.length).toBeGreaterThan(0);
  expect(new Set(trap.attempts)).toEqual(new Set(['CONNECT registry.npmjs.org:443']));
});

it('stops, leaving the prepared storage exactly as it was', async () => {
  await registry.stop();
  await expect(fetch(new URL('-/ping', registry.url))).rejects.toThrow();
  expect(snapshot(storageDirOf(testRegistryDir()))).toEqual(storageBefore);
});

/** A proxy that records each request and CONNECT it gets, and answers none. */
async function trapProxy() {
  const attempts: string[] = [];
  const server = createServer((req, res) => {
    attempts.push(`${req.method} ${req.url}`);
    res.writeHead(502).end();
  });
  server.on('connect', (req, socket) => {
    attempts.push(`CONNECT ${req.url}`);
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, attempts, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/** Each file's inode, size and mtime: a write, a replacement or a new file shows. */
function snapshot(dir: string): Map<string, string> {
  const files = readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
  return new Map(
    files.map((e) => {
      const path = join(e.parentPath, e.name);
      const s = statSync(path);
      return [relative(dir, path), `${s.ino}:${s.size}:${s.mtimeMs}`];
    }),
  );
}
