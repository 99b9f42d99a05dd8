import { routeRequest } from '../src/session-routing';

const id = '6f1c1a39-3c2e-4b8a-9a55-1b2f6a1f0e7d';
const own = `${id}.localhost:3000`;

describe('routeRequest (by Host)', () => {
  it.each(['/', '/src/App.jsx', '/@vite/client', '/?token=abc', '/icons.svg', '/api/users', '/health', '/__pool/claim'])(
    'proxies %s on its own preview origin, the whole path space being the project’s',
    (url) => {
      expect(routeRequest(own, url, id)).toEqual({ kind: 'preview' });
    },
  );

  it('matches its own origin whatever the domain, port or letter case', () => {
    for (const host of [`${id}.preview.example.com`, `${id.toUpperCase()}.LOCALHOST`, `${id}.localhost.`, `${id}.localhost:8080`]) {
      expect(routeRequest(host, '/', id)).toEqual({ kind: 'preview' });
    }
  });

  it('answers Session not found, with the route id, for another preview origin (a misrouted request)', () => {
    const other = '0b7e2a43-7bb3-4d0a-8f44-7d7d3a1a9f00';
    expect(routeRequest(`${other}.localhost:3000`, '/src/main.jsx?x=1', id)).toEqual({
      kind: 'not-found',
      body: { error: 'Session not found', routeId: other },
    });
  });

  it("sends any other Host to the machine's own endpoints, never to the project", () => {
    for (const host of ['127.0.0.1:4000', '[::1]:4000', 'localhost', undefined, `${id}x.localhost`, `x${id}.localhost`, 'example.com']) {
      expect(routeRequest(host, '/', id)).toEqual({ kind: 'control' });
    }
  });

  it.each(['/__open-in-editor?file=/etc/passwd', '/__OPEN-IN-EDITOR?file=x', '//__open-in-editor', '/%5F%5Fopen-in-editor?file=x', '/__open-in-editor/x'])(
    'refuses Vite’s host-acting endpoint %s on its own origin',
    (url) => {
      expect(routeRequest(own, url, id)).toEqual({ kind: 'not-found', body: { error: 'Not found' } });
    },
  );

  it('leaves paths that only start like the blocked endpoint to the project', () => {
    expect(routeRequest(own, '/__open-in-editorial.html', id)).toEqual({ kind: 'preview' });
  });
});
