import { moduleScripts, staticImports } from '../src/warm-up';

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
