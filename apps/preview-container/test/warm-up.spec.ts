import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { moduleScripts, rehearsePage, staticImports } from '../src/warm-up';

describe('warm-up parsing', () => {
  it('finds module scripts with a src', () => {
    const html = `<script type="module">inline()</script><script type="module" src="/@vite/client"></script>
      <script src="/classic.js"></script><script type=module src='/src/main.jsx'></script>`;
    expect(moduleScripts(html)).toEqual(['/@vite/client', '/src/main.jsx']);
  });

  it('finds static imports', () => {
    const code = `import a from "/deps/react.js?v=1";\nimport { b } from '/src/App.jsx';import "/src/App.css";\nconst s = "import x";`;
    expect(staticImports(code)).toEqual(['/deps/react.js?v=1', '/src/App.jsx', '/src/App.css']);
  });
});

describe('page rehearsal of a pooled machine', () => {
  let server: Server;
  let url: string;
  const seen: Array<string | undefined> = [];
  let status = 200;

  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push(`${req.headers.accept} ${req.headers.host}`);
      res.writeHead(status, { 'content-type': 'text/html' });
      res.end('<html></html>');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('asks for the page as HTML, on the preview origin it names, the given number of times', async () => {
    seen.length = 0;
    await rehearsePage(url, 'abc.localhost', 7);
    expect(seen).toEqual(Array(7).fill('text/html abc.localhost'));
  });

  it('fails naming the URL and the status when the page does not answer 200', async () => {
    status = 503;
    await expect(rehearsePage(url, 'abc.localhost', 3)).rejects.toThrow(`GET ${url} answered 503`);
    status = 200;
  });
});
