import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { BuildState, Diagnostic } from '@velocity/contracts';
import { pageDiagnostics } from './verify-url.step';

/**
 * The verification walk of a page's modules, against a stand-in for a preview
 * (its page, its modules as Vite serves them, its machine's build state): what
 * it asks for, how many at once, and what `ready` then says.
 */
describe('verify-url: the page walk and the build state', () => {
  let server: Server;
  let url: string;
  const requests: IncomingMessage[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  /** Module path → [status, body]; `hang` never answers. */
  let modules: Record<string, [number, string] | 'hang'> = {};
  let build: BuildState | null = null;
  /** What the stand-in machine puts in BUILD_STATE_HEADER on module answers (none: an older machine). */
  let header: string | undefined;

  const page = '<!doctype html><html><head><link rel="stylesheet" href="/src/base.css"></head><body><script type="module" src="/@vite/client"></script><script type="module" src="/src/main.jsx"></script></body></html>';
  const cleanApp = (): typeof modules => ({
    '/src/main.jsx': [200, 'import "/.vite-cache/deps/react.js?v=1";\nimport App from "/src/App.jsx";\nimport "/src/App.css";\nimport "/@react-refresh";'],
    '/src/App.jsx': [200, 'import { a } from "/src/a.js";import { b } from "/src/b.js";import { c } from "/src/c.js";import "/src/App.jsx";'],
    '/src/App.css': [200, 'export default ""'],
    '/src/base.css': [200, 'body {}'],
    '/src/a.js': [200, 'import "/src/d.js"'],
    '/src/b.js': [200, 'import "/src/d.js"'],
    '/src/c.js': [200, 'import "/src/e.js";import "/src/f.js";import "/src/g.js";import "/src/h.js";import "/src/i.js"'],
  });

  beforeAll(async () => {
    server = createServer((req, res) => {
      requests.push(req);
      const path = req.url ?? '/';
      if (path === '/__velocity/build-state') {
        if (!build) return void res.writeHead(404).end('{"error":"Not found"}');
        return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(build));
      }
      const answer = modules[path] ?? [200, ''];
      if (answer === 'hang') return;
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      setTimeout(() => {
        inFlight--;
        res.writeHead(answer[0], header ? { 'x-velocity-build': header } : {}).end(answer[1]);
      }, 5);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  beforeEach(() => {
    requests.length = 0;
    maxInFlight = 0;
    modules = cleanApp();
    build = { state: 'ok', diagnostics: [], at: 1 };
    header = undefined;
  });

  const asked = () => requests.map((r) => r.url).filter((u) => u !== '/__velocity/build-state');

  it('a clean page: every project module once, as script loads, at most 6 at once, no dependency or Vite module; nothing to say', async () => {
    header = 'ok';
    expect(await pageDiagnostics(url, page, 5000)).toEqual([]);
    expect(asked().sort()).toEqual(['/src/App.css', '/src/App.jsx', '/src/a.js', '/src/b.js', '/src/base.css', '/src/c.js', '/src/d.js', '/src/e.js', '/src/f.js', '/src/g.js', '/src/h.js', '/src/i.js', '/src/main.jsx']);
    expect(maxInFlight).toBeLessThanOrEqual(6);
    expect(requests.filter((r) => r.url !== '/__velocity/build-state').every((r) => r.headers['sec-fetch-dest'] === 'script')).toBe(true);
    // Every module said the build was clean: the state is not asked for.
    expect(requests.map((r) => r.url)).not.toContain('/__velocity/build-state');
  });

  it('reads the build state, after the walk, when a module says the build has errors (or says nothing: an older machine)', async () => {
    const diagnostic: Diagnostic = { kind: 'build', message: 'The optimizer failed' };
    build = { state: 'errors', diagnostics: [diagnostic], at: 2 };
    for (const said of ['errors', undefined]) {
      header = said;
      requests.length = 0;
      expect(await pageDiagnostics(url, page, 5000)).toEqual([diagnostic]);
      // After the walk, which brought it up to date.
      expect(requests.at(-1)?.url).toBe('/__velocity/build-state');
    }
  });

  it('a module that fails to compile: `ready` carries the machine\'s diagnostics, not a second copy of the 500', async () => {
    modules['/src/App.jsx'] = [500, 'Internal server error'];
    const diagnostic: Diagnostic = { kind: 'build', file: 'src/App.jsx', line: 8, column: 24, message: 'Expected `}`', plugin: 'vite:oxc' };
    build = { state: 'errors', diagnostics: [diagnostic], at: 2 };
    expect(await pageDiagnostics(url, page, 5000)).toEqual([diagnostic]);
    // Its imports are not known, so not asked for.
    expect(asked()).not.toContain('/src/a.js');
  });

  it('a failure the machine does not explain is a diagnostic of its own; so is a machine that cannot say (no build state)', async () => {
    modules['/src/App.css'] = [502, 'Dev server unavailable'];
    build = null;
    expect(await pageDiagnostics(url, page, 5000)).toEqual([{ kind: 'build', file: 'src/App.css', message: '/src/App.css answered 502' }]);
  });

  it('gives up on the walk at its timeout, saying what it still waited for, and still reads the build state', async () => {
    modules['/src/c.js'] = 'hang';
    const started = Date.now();
    const diagnostics = await pageDiagnostics(url, page, 300);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(diagnostics).toEqual([{ kind: 'build', message: expect.stringMatching(/^Timed out after 300 ms waiting for the page's modules through http:\/\/127\.0\.0\.1:\d+ \(\d+ asked, still waiting for \/src\/c\.js\)$/) }]);
    expect(requests.at(-1)?.url).toBe('/__velocity/build-state');
  });

  it('previews on *.localhost origins: each request names its own Host, and the previews share kept-alive connections', async () => {
    header = 'ok';
    const { port } = new URL(url);
    expect(await pageDiagnostics(`http://a1.localhost:${port}/`, page, 5000)).toEqual([]);
    const first = new Set(requests.map((r) => r.socket));
    expect(await pageDiagnostics(`http://b2.localhost:${port}/`, page, 5000)).toEqual([]);
    expect(new Set(requests.map((r) => r.headers.host))).toEqual(new Set([`a1.localhost:${port}`, `b2.localhost:${port}`]));
    // The second preview's requests went over the first one's connections, not new ones of its own.
    expect(requests.every((r) => first.has(r.socket))).toBe(true);
  });
});
