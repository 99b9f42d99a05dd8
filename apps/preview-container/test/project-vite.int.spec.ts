import { EventEmitter } from 'node:events';
import { execFile } from 'node:child_process';
import { promises as fsPromises, mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { UserConfig } from 'vite';
import { applyMachineSettings, esmEntry, keepConfigBundleOutOf, projectConfigFile, type MachineSettings } from '../src/project-vite';

const repoDir = resolve(__dirname, '../../..');
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pc-project-vite-'));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function writePackage(packageDir: string, manifest: object, files: Record<string, string> = {}): void {
  mkdirSync(packageDir, { recursive: true });
  writeFileSync(join(packageDir, 'package.json'), JSON.stringify(manifest));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(packageDir, name), content);
}

describe('esmEntry', () => {
  it.each([
    ['Vite 5 (import and require, types first)', { import: { types: './dist/node/index.d.ts', default: './dist/node/index.js' }, require: { default: './index.cjs' } }],
    ['Vite 6 (module-sync, import, require)', { 'module-sync': './dist/node/index.js', import: './dist/node/index.js', require: './index.cjs' }],
    ['Vite 7 and 8 (ESM only)', './dist/node/index.js'],
    ['a subpath map', { '.': { require: './index.cjs', import: './dist/node/index.js' }, './client': './client.js' }],
  ])('takes the ESM entry of %s', (_name, exports) => {
    writePackage(dir, { name: 'vite', exports });
    expect(esmEntry(dir)).toBe(join(dir, 'dist/node/index.js'));
  });

  it('falls back to module, then main, then index.js without exports; refuses exports with no import entry', () => {
    writePackage(dir, { module: './m.js', main: './c.js' });
    expect(esmEntry(dir)).toBe(join(dir, 'm.js'));
    writePackage(dir, { main: './c.js' });
    expect(esmEntry(dir)).toBe(join(dir, 'c.js'));
    writePackage(dir, {});
    expect(esmEntry(dir)).toBe(join(dir, 'index.js'));
    writePackage(dir, { exports: { '.': { require: './c.cjs' } } });
    expect(() => esmEntry(dir)).toThrow('exports no "." entry for import');
  });
});

describe('projectConfigFile', () => {
  it("finds the project's vite.config at the root in Vite's order, and only files", () => {
    expect(projectConfigFile(dir)).toBeUndefined();
    mkdirSync(join(dir, 'vite.config.js')); // a folder is no config
    writeFileSync(join(dir, 'vite.config.cts'), '');
    expect(projectConfigFile(dir)).toBe(join(dir, 'vite.config.cts'));
    writeFileSync(join(dir, 'vite.config.ts'), '');
    expect(projectConfigFile(dir)).toBe(join(dir, 'vite.config.ts'));
    writeFileSync(join(dir, 'vite.config.mjs'), '');
    expect(projectConfigFile(dir)).toBe(join(dir, 'vite.config.mjs'));
  });
});

describe('applyMachineSettings', () => {
  const upgrades = new EventEmitter();
  const settings: MachineSettings = {
    root: '/project',
    cacheDir: '/project/.vite-cache',
    upgrades,
    hmrClientPort: 443,
    fs: { strict: true, allow: ['/project', '/deps/node_modules'], deny: ['.env'] },
    logLevel: 'warn',
  };
  /** A project's config that sets everything the machine decides, the other way. */
  const projectConfig = (): UserConfig => ({
    root: '/elsewhere',
    base: '/app/',
    cacheDir: 'node_modules/.vite',
    clearScreen: true,
    logLevel: 'info',
    define: { KEPT: '1' },
    server: {
      host: '0.0.0.0',
      port: 5173,
      strictPort: false,
      allowedHosts: ['a.example'],
      cors: true,
      open: true,
      https: {},
      origin: 'http://a.example',
      proxy: { '/api': 'http://10.0.0.1' },
      hmr: { port: 24999, host: 'a.example', path: '/hmr', protocol: 'wss', clientPort: 1, overlay: false },
      fs: { strict: false, allow: ['/'], deny: [] },
      headers: { 'x-kept': '1' },
      watch: { usePolling: true },
    },
    legacy: { skipWebSocketTokenCheck: true },
  });

  it.each([5, 6, 7])("Vite %i: middleware mode, the HMR socket on the machine's server and its client port in server.hmr, keeps the rest", (major) => {
    const config = projectConfig();
    applyMachineSettings(config, settings, major);
    expect(config).toEqual({
      root: '/project',
      base: '/',
      cacheDir: '/project/.vite-cache',
      clearScreen: false,
      logLevel: 'warn',
      define: { KEPT: '1' },
      server: {
        middlewareMode: true,
        allowedHosts: true,
        cors: false,
        hmr: { overlay: false, server: upgrades, clientPort: 443 },
        fs: settings.fs,
        headers: { 'x-kept': '1' },
        watch: { usePolling: true },
      },
      legacy: { skipWebSocketTokenCheck: false },
    });
  });

  it("Vite 8: the HMR socket and client port in server.ws, its socket options dropped from both, devtools and bundled dev off", () => {
    const config = projectConfig();
    (config.server as Record<string, unknown>).ws = { port: 24999, clientPort: 1 };
    applyMachineSettings(config, settings, 8);
    expect(config.server?.hmr).toEqual({ overlay: false });
    expect((config.server as Record<string, unknown>).ws).toEqual({ server: upgrades, clientPort: 443 });
    expect(config.server).toMatchObject({ middlewareMode: true });
    expect(config.server).not.toHaveProperty('port');
    expect(config).toMatchObject({ devtools: false, experimental: { bundledDev: false } });
  });

  it('keeps HMR off when the project turned it off, a root inside the work folder, and drops a null watch', () => {
    const config: UserConfig = { root: 'client', server: { hmr: false, watch: null } };
    applyMachineSettings(config, settings, 5);
    expect(config.root).toBe('/project/client');
    expect(config.server).not.toHaveProperty('watch');
    expect(config.server?.hmr).toBe(false);
    // Else Vite 5-7 in middleware mode would listen on a port of its own for the socket no page asks for.
    expect((config.server as Record<string, unknown>).ws).toBe(false);
    const v8: Record<string, any> = { server: { ws: false } };
    applyMachineSettings(v8, { ...settings, hmrClientPort: undefined }, 8);
    expect(v8.server.ws).toBe(false);
    expect(v8.server.hmr).toEqual({});
    for (const root of ['/project/../etc', '..']) {
      const outside: UserConfig = { root };
      applyMachineSettings(outside, settings, 6);
      expect(outside.root).toBe('/project');
    }
  });
});

describe('keepConfigBundleOutOf', () => {
  it('makes creating .vite-temp in the dependency folders fail as unwritable, and nothing else', async () => {
    const nodeModules = join(dir, 'node_modules');
    mkdirSync(nodeModules);
    keepConfigBundleOutOf([nodeModules]);
    await expect(fsPromises.mkdir(join(nodeModules, '.vite-temp/'), { recursive: true })).rejects.toMatchObject({ code: 'EACCES' });
    await fsPromises.mkdir(join(nodeModules, '.vite'), { recursive: true });
    await fsPromises.mkdir(join(dir, '.vite-temp'));
    expect(realpathSync(join(dir, '.vite-temp'))).toBe(join(realpathSync(dir), '.vite-temp'));
  });
});

describe('loadVite (in a child process: Vite is an ES module Jest cannot load)', () => {
  const script = `
    const { loadVite } = require(${JSON.stringify(join(__dirname, '../src/project-vite'))});
    loadVite(process.argv[1]).then(
      (vite) => process.stdout.write(JSON.stringify({ version: vite.version, major: vite.major, packageDir: vite.packageDir })),
      (error) => { console.error(error); process.exit(1); });`;
  const loadIn = async (workDir: string) => {
    const { stdout } = await promisify(execFile)(process.execPath, ['-r', '@swc-node/register', '-e', script, workDir], { cwd: repoDir, timeout: 30_000 });
    return JSON.parse(stdout) as { version: string; major: number; packageDir: string };
  };
  const fakeVite = (nodeModules: string, version: string) =>
    writePackage(
      join(nodeModules, 'vite'),
      { name: 'vite', version, type: 'module', exports: { '.': { import: './index.js', require: './index.cjs' } } },
      { 'index.js': `export const version = '${version}';\nexport async function createServer() {}\n`, 'index.cjs': 'throw new Error("CommonJS entry loaded");\n' },
    );

  it("imports the Vite in <workDir>/node_modules by its ESM entry, else the service's, never a parent folder's", async () => {
    const workDir = join(dir, 'project');
    mkdirSync(workDir);
    // A parent folder's node_modules is not the project's.
    fakeVite(join(dir, 'node_modules'), '6.0.0-parent');
    const service = await loadIn(workDir);
    expect(service.packageDir).toBe(realpathSync(join(repoDir, 'node_modules/vite')));
    expect(service.major).toBe(8);
    fakeVite(join(workDir, 'node_modules'), '5.9.9-project');
    expect(await loadIn(workDir)).toEqual({ version: '5.9.9-project', major: 5, packageDir: realpathSync(join(workDir, 'node_modules/vite')) });
  }, 60_000);
});
