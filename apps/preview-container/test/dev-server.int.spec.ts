import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { linkNodeModules } from '../src/files';

/**
 * memoizeIndexHtml over a real Vite dev server (no port), with a plugin that
 * counts the page transforms. Vite is an ES module Jest cannot load, so the
 * script runs in its own node process and prints what it saw.
 */
const script = `
(async () => {
  const { mkdtempSync, rmSync } = require('node:fs');
  const { tmpdir } = require('node:os');
  const { join } = require('node:path');
  const { memoizeIndexHtml } = require(${JSON.stringify(join(__dirname, '../src/dev-server'))});
  const { createServer } = await import('vite');
  const root = mkdtempSync(join(tmpdir(), 'pc-html-'));
  let transforms = 0;
  const vite = await createServer({
    root, configFile: false, logLevel: 'silent', server: { middlewareMode: true, ws: false },
    plugins: [{ name: 'count', transformIndexHtml(html) { transforms += 1; if (html.includes('broken')) throw new Error('broken page'); return html; } }],
  });
  memoizeIndexHtml(vite);
  const page = '<html><head></head><body><div id="root"></div></body></html>';
  const seen = {};
  try {
    const first = await vite.transformIndexHtml('/', page);
    const again = await vite.transformIndexHtml('/', page);
    Object.assign(seen, { same: first === again, client: first.includes('/@vite/client'), afterTwoSame: transforms });
    await vite.transformIndexHtml('/', page.replace('root', 'app'));
    await vite.transformIndexHtml('/index.html', page);
    seen.afterChangedAndOtherUrl = transforms;
    const broken = page.replace('<body>', '<body>broken');
    seen.failures = [];
    for (let i = 0; i < 2; i++) await vite.transformIndexHtml('/', broken).catch((e) => seen.failures.push(e.message));
    seen.afterTwoFailures = transforms;
  } finally {
    await vite.close();
    rmSync(root, { recursive: true, force: true });
  }
  process.stdout.write(JSON.stringify(seen));
})().catch((e) => { console.error(e); process.exit(1); });
`;

describe('memoizeIndexHtml (real Vite, in a child process)', () => {
  it('transforms a page once per URL and content, again when either changes, and never keeps a failure', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['-r', '@swc-node/register', '-e', script], {
      cwd: join(__dirname, '../../..'),
      timeout: 30_000,
    });
    expect(JSON.parse(stdout)).toEqual({
      same: true,
      client: true,
      afterTwoSame: 1,
      afterChangedAndOtherUrl: 3,
      failures: ['broken page', 'broken page'],
      afterTwoFailures: 5,
    });
  }, 40_000);
});

describe('startDevServer on a project whose vite.config fails (in a child process)', () => {
  const script = `
    const { startDevServer } = require(${JSON.stringify(join(__dirname, '../src/dev-server'))});
    startDevServer({ workDir: process.argv[1], templateType: 'react', nodeModulesRealDir: process.argv[2] }).then(
      (dev) => dev.close().then(() => process.stdout.write('started')),
      (error) => process.stdout.write(error.message));`;
  let workDir: string;

  beforeEach(() => {
    workDir = mkdtempSync(join(tmpdir(), 'pc-broken-config-'));
  });

  afterEach(() => {
    rmSync(workDir, { recursive: true, force: true });
  });

  it("fails naming the file and the project's error", async () => {
    const repoNodeModules = join(__dirname, '../../../node_modules');
    const nodeModulesRealDir = await linkNodeModules(workDir, repoNodeModules);
    writeFileSync(join(workDir, 'index.html'), '<!doctype html><html><body></body></html>');
    writeFileSync(join(workDir, 'vite.config.mjs'), "throw new Error('broken on purpose');\n");
    const { stdout } = await promisify(execFile)(process.execPath, ['-r', '@swc-node/register', '-e', script, workDir, nodeModulesRealDir], {
      cwd: join(__dirname, '../../..'),
      timeout: 30_000,
    });
    expect(stdout).toMatch(/^Vite 8\.\d+\.\d+\S* could not start with the project's vite\.config\.mjs: .*broken on purpose/);
  }, 40_000);
});

describe('startDevServer: what onServer hooks survives Vite restarting on a vite.config edit (in a child process)', () => {
  // The hook wraps the page transform to add a marker; after the config edit, Vite restarts and the page must still carry it.
  const script = `
    const { writeFileSync } = require('node:fs');
    const { join } = require('node:path');
    const { startDevServer } = require(${JSON.stringify(join(__dirname, '../src/dev-server'))});
    const { serveOnLoopback } = require(${JSON.stringify(join(__dirname, '../src/warm-up'))});
    const [workDir, nodeModulesRealDir] = process.argv.slice(1);
    const seen = { servers: 0, pages: [] };
    let served;
    const page = async () => (await (await fetch(served.origin + '/', { headers: { accept: 'text/html' } })).text()).includes('<!--hooked-->');
    (async () => {
      const dev = await startDevServer({
        workDir, templateType: 'react', nodeModulesRealDir,
        onServer: (server) => {
          seen.servers += 1;
          const transform = server.transformIndexHtml;
          server.transformIndexHtml = async (...args) => (await transform.apply(server, args)) + '<!--hooked-->';
        },
      });
      served = await serveOnLoopback(dev);
      try {
        seen.pages.push(await page());
        writeFileSync(join(workDir, 'vite.config.mjs'), "export default { define: { __EDITED__: 'true' } };\\n");
        const until = Date.now() + 20000;
        while (seen.servers < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
        // The restarted server's middlewares answer once it is made.
        for (let i = 0; i < 100; i++) { try { seen.pages.push(await page()); break; } catch { await new Promise((r) => setTimeout(r, 100)); } }
      } finally {
        await served.close();
        await dev.close();
      }
      process.stdout.write(JSON.stringify(seen));
    })().catch((e) => { console.error(e); process.exit(1); });`;
  let workDir: string;

  beforeEach(() => {
    workDir = mkdtempSync(join(tmpdir(), 'pc-restart-'));
  });

  afterEach(() => {
    rmSync(workDir, { recursive: true, force: true });
  });

  it('runs onServer on the first server and on the restarted one, so the page keeps what it added', async () => {
    const nodeModulesRealDir = await linkNodeModules(workDir, join(__dirname, '../../../node_modules'));
    writeFileSync(join(workDir, 'index.html'), '<!doctype html><html><head></head><body></body></html>');
    writeFileSync(join(workDir, 'vite.config.mjs'), 'export default {};\n');
    const { stdout } = await promisify(execFile)(process.execPath, ['-r', '@swc-node/register', '-e', script, workDir, nodeModulesRealDir], {
      cwd: join(__dirname, '../../..'),
      timeout: 40_000,
    });
    expect(JSON.parse(stdout)).toEqual({ servers: 2, pages: [true, true] });
  }, 50_000);
});
