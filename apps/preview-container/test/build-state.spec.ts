import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildStateSchema, type BuildState } from '@velocity/contracts';
import { BuildTracker, RUNTIME_ERRORS_KEPT, originalPosition, stackPositions, type ViteErrorLike } from '../src/build-state';
import { projectPathHider } from '../src/vite-build-watch';

/**
 * The build tracker fed what a real Vite sends and throws (fixtures/vite-errors.json,
 * written by fixtures/capture-vite-errors.ts from Vite 8 on the react template),
 * with its paths put back as a machine's would be.
 */
const ROOT = '/tmp/vp-fixture/project';
const DEPS = '/tmp/vp-fixture/service/node_modules';
const raw = readFileSync(join(__dirname, 'fixtures/vite-errors.json'), 'utf8');
const fixture = JSON.parse(raw.split('<ROOT>').join(ROOT).split('<DEPS>').join(DEPS).split('<CWD>').join(ROOT)) as {
  vite: string;
  served: { url: string; code: string; map: { mappings: string } };
  cases: Record<string, { file: string; hot: { type: 'error'; err: ViteErrorLike }; thrown: ViteErrorLike; afterChange: unknown[]; afterFix: unknown[] }>;
};

const tracker = () => new BuildTracker(projectPathHider(ROOT, [DEPS]), () => 1_700_000_000_000);
/** No host path anywhere in what the tracker says. */
const expectNoHostPath = (state: BuildState) => {
  const json = JSON.stringify(state);
  expect(json).not.toContain('/tmp/vp-fixture');
  expect(json).not.toContain('\u001b[');
  expect(buildStateSchema.safeParse(state).success).toBe(true);
};

describe('BuildTracker, fed Vite 8 error payloads', () => {
  it('was given real payloads (every case has the error Vite sent and the one it threw)', () => {
    expect(fixture.vite).toMatch(/^\d+\./);
    for (const c of Object.values(fixture.cases)) {
      expect(c.hot.type).toBe('error');
      expect(c.thrown.message).toBeTruthy();
    }
  });

  it.each([
    // oxc puts no `loc` on its parse errors: the line comes from the message's `╭─[ src/App.jsx:8:24 ]`.
    ['jsxSyntax', { file: 'src/App.jsx', line: 8, column: 24, plugin: 'vite:oxc' }, /Expected `}` but found `Identifier`/],
    ['missingPackage', { file: 'src/App.jsx', line: 1, column: 15, plugin: 'vite:import-analysis' }, /Failed to resolve import "no-such-package" from "src\/App.jsx"/],
    ['missingFile', { file: 'src/App.jsx', line: 1, column: 18, plugin: 'vite:import-analysis' }, /Failed to resolve import "\.\/Nope\.jsx"/],
    ['cssSyntax', { file: 'src/App.css', line: 3, column: 2, plugin: 'vite:css' }, /^\[postcss\] src\/App\.css:3:2: Unexpected }$/],
  ])('%s: names the project file, its line and column, the plugin and the message', (name, where, message) => {
    for (const err of [fixture.cases[name].hot.err, fixture.cases[name].thrown]) {
      const t = tracker();
      t.buildError(err);
      const { state, diagnostics } = t.current;
      expect(state).toBe('errors');
      expect(diagnostics).toHaveLength(1);
      expect(diagnostics[0]).toMatchObject({ kind: 'build', ...where });
      expect(diagnostics[0].message).toMatch(message);
      expectNoHostPath(t.current);
    }
  });

  it('keeps the code frame Vite gives, without host paths', () => {
    const t = tracker();
    t.buildError(fixture.cases.missingPackage.hot.err);
    expect(t.current.diagnostics[0].frame).toContain('import x from "no-such-package"');
    expectNoHostPath(t.current);
  });

  it('clears a module\'s errors once it transforms again, and only that module\'s', () => {
    const t = tracker();
    const changes: BuildState[] = [];
    t.onChange((state) => changes.push(state));
    t.buildError(fixture.cases.missingPackage.hot.err, '/src/App.jsx');
    t.buildError(fixture.cases.cssSyntax.hot.err, '/src/App.css');
    // The same error again (the page asked again): nothing new to say.
    t.buildError(fixture.cases.missingPackage.thrown, '/src/App.jsx');
    expect(changes.map((s) => s.diagnostics.map((d) => d.file))).toEqual([['src/App.jsx'], ['src/App.jsx', 'src/App.css']]);
    expect(t.recheckUrls().sort()).toEqual(['/src/App.css', '/src/App.jsx']);

    t.moduleOk(`${ROOT}/src/App.jsx`, '/src/App.jsx');
    expect(t.current.diagnostics.map((d) => d.file)).toEqual(['src/App.css']);
    t.moduleOk(`${ROOT}/src/App.css`, '/src/App.css?direct');
    expect(t.current).toEqual({ state: 'ok', diagnostics: [], at: 1_700_000_000_000 });
    expect(changes).toHaveLength(4);
  });

  it('a fixed file replaces its error with the new one (a syntax error fixed into a missing import)', () => {
    const t = tracker();
    t.buildError(fixture.cases.jsxSyntax.thrown, '/src/App.jsx');
    t.buildError(fixture.cases.missingFile.thrown, '/src/App.jsx');
    expect(t.current.diagnostics).toHaveLength(1);
    expect(t.current.diagnostics[0].message).toMatch(/Nope\.jsx/);
  });

  it('an error about a file that is gone goes with it', () => {
    const t = tracker();
    t.buildError(fixture.cases.cssSyntax.hot.err);
    t.fileGone(`${ROOT}/src/App.css`);
    expect(t.current.state).toBe('ok');
  });

  it('an error naming no file lasts until the code changes', () => {
    const t = tracker();
    t.buildError({ message: 'The optimizer failed' });
    expect(t.current.diagnostics).toEqual([{ kind: 'build', message: 'The optimizer failed' }]);
    t.codeChanged();
    expect(t.current.state).toBe('ok');
  });

  it('a module request of the page that answers 404 is an error until it answers', () => {
    const t = tracker();
    t.moduleRequestFinished('/src/Missing.jsx?t=1', 404);
    t.moduleRequestFinished('/@vite/client', 404);
    t.moduleRequestFinished('/.vite-cache/deps/react.js?v=1', 404);
    t.moduleRequestFinished('/src/App.jsx', 500);
    expect(t.current.diagnostics).toEqual([{ kind: 'build', file: 'src/Missing.jsx', message: expect.stringContaining('/src/Missing.jsx answered 404') }]);
    expect(t.recheckUrls()).toEqual(['/src/Missing.jsx']);
    t.moduleRequestFinished('/src/Missing.jsx', 304);
    expect(t.current.state).toBe('ok');
  });
});

describe('BuildTracker, runtime errors of the page', () => {
  const origin = 'http://0b5d3f4e-1111-4111-8111-111111111111.localhost:3000';
  /** The served App.jsx line that holds the click handler, and where it is in it. */
  const handlerLine = fixture.served.code.split('\n').findIndex((line) => line.includes('onClick: () => setCount')) + 1;
  const handlerColumn = fixture.served.code.split('\n')[handlerLine - 1].indexOf('setCount') + 1;

  it('source maps a position of the served module back to the project file', () => {
    expect(handlerLine).toBeGreaterThan(10);
    // src/App.jsx: `      <button type="button" onClick={() => setCount((n) => n + 1)}>` is line 10.
    expect(originalPosition(fixture.served.map, handlerLine, handlerColumn)).toEqual({ line: 10, column: expect.any(Number) });
    expect(originalPosition(fixture.served.map, 10_000, 1)).toBeUndefined();
    expect(originalPosition(undefined, 1, 1)).toBeUndefined();
  });

  it('names the first project frame of the stack, mapped to the file; the stack keeps paths only', () => {
    const t = tracker();
    t.locate = (urlPath, line, column) => {
      expect(urlPath).toBe('/src/App.jsx?t=171');
      return { file: 'src/App.jsx', ...originalPosition(fixture.served.map, line!, column!) };
    };
    const stack = [
      'Error: boom',
      `    at onClick (${origin}/src/App.jsx?t=171:${handlerLine}:${handlerColumn})`,
      `    at executeDispatch (${origin}/.vite-cache/deps/react-dom_client.js?v=1:100:5)`,
    ].join('\n');
    t.runtimeErrors([{ message: 'boom', source: `${origin}/.vite-cache/deps/react-dom_client.js?v=1`, line: 100, column: 5, stack }]);
    const [diagnostic] = t.current.diagnostics;
    expect(diagnostic).toMatchObject({ kind: 'runtime', file: 'src/App.jsx', line: 10, message: 'boom' });
    expect(diagnostic.frame).toContain(`at onClick (/src/App.jsx?t=171:${handlerLine}:${handlerColumn})`);
    expect(diagnostic.frame).not.toContain('localhost');
  });

  it('reads Firefox stacks too', () => {
    expect(stackPositions(`onClick@${origin}/src/App.jsx:26:12\n@${origin}/src/main.jsx:3:1`)).toEqual([
      { url: `${origin}/src/App.jsx`, line: 26, column: 12 },
      { url: `${origin}/src/main.jsx`, line: 3, column: 1 },
    ]);
  });

  it('keeps the first few, each once, and forgets them when the code changes', () => {
    const t = tracker();
    t.runtimeErrors([{ message: 'same' }, { message: 'same' }]);
    expect(t.current.diagnostics).toEqual([{ kind: 'runtime', message: 'same' }]);
    t.runtimeErrors(Array.from({ length: 10 }, (_, i) => ({ message: `error ${i}` })));
    t.runtimeErrors(Array.from({ length: 10 }, (_, i) => ({ message: `later ${i}` })));
    expect(t.current.diagnostics).toHaveLength(RUNTIME_ERRORS_KEPT);
    expect(t.current.diagnostics.at(-1)?.message).toBe('error 8');
    t.codeChanged();
    expect(t.current.state).toBe('ok');
  });

  it('cuts what is too long, and a build error comes before runtime errors', () => {
    const t = tracker();
    t.runtimeErrors([{ message: 'x'.repeat(5000), stack: 'y'.repeat(10_000) }]);
    t.buildError(fixture.cases.jsxSyntax.hot.err);
    const [build, runtime] = t.current.diagnostics;
    expect(build.kind).toBe('build');
    expect(runtime.message).toHaveLength(1000);
    expect(runtime.frame).toHaveLength(2000);
    expectNoHostPath(t.current);
  });
});
