import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { moduleScripts, rehearsePage, staticImports } from '../src/warm-up';

describe('warm-up parsing', () => {
  it('finds module scripts with a src', () => {
    const html = `<script type="module">inline()</script><script type="module" src="/p/x/@vite/client"></script>
      <script src="/classic.js"></script><script type=module src='/p/x/src/main.jsx'></script>`;
    expect(moduleScripts(html)).toEqual(['/p/x/@vite/client', '/p/x/src/main.jsx']);
  });

  it('finds static imports', () => {
    const code = `import a from "/p/x/deps/react.js?v=1";\nimport { b } from '/p/x/src/App.jsx';import "/p/x/src/App.css";\nconst s = "import x";`;
    expect(staticImports(code)).toEqual(['/p/x/deps/react.js?v=1', '/p/x/src/App.jsx', '/p/x/src/App.css']);
  });
});

describe('page rehearsal of a pooled machine', () => {
  let server: Server;
  let url: string;
  const seen: Array<string | undefined> = [];
  let status = 200;

  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push(req.headers.accept);
      res.writeHead(status, { 'content-type': 'text/html' });
      res.end('<html></html>');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/p/x/`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('asks for the page as HTML the given number of times', async () => {
    seen.length = 0;
    await rehearsePage(url, 7);
    expect(seen).toEqual(Array(7).fill('text/html'));
  });

  it('fails naming the URL and the status when the page does not answer 200', async () => {
    status = 503;
    await expect(rehearsePage(url, 3)).rejects.toThrow(`GET ${url} answered 503`);
    status = 200;
  });
});
