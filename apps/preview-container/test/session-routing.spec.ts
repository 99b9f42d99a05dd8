import { routeRequest } from '../src/session-routing';

const id = '6f1c1a39-3c2e-4b8a-9a55-1b2f6a1f0e7d';
const base = `/p/${id}/`;

describe('routeRequest', () => {
  it.each([base, `${base}src/App.jsx`, `${base}@vite/client`, `${base}?token=abc`, `${base}.vite-cache/deps/react.js?v=1`])(
    'proxies %s (own session)',
    (url) => {
      expect(routeRequest(url, base)).toEqual({ kind: 'proxy' });
    },
  );

  it('redirects the base path without its trailing slash, keeping the query', () => {
    expect(routeRequest(`/p/${id}`, base)).toEqual({ kind: 'redirect', status: 308, location: base });
    expect(routeRequest(`/p/${id}?a=1`, base)).toEqual({ kind: 'redirect', status: 308, location: `${base}?a=1` });
  });

  it('answers Session not found, with the id, for another session', () => {
    const other = '0b7e2a43-7bb3-4d0a-8f44-7d7d3a1a9f00';
    for (const url of [`/p/${other}/`, `/p/${other}`, `/p/${other}/src/main.jsx?x=1`]) {
      expect(routeRequest(url, base)).toEqual({ kind: 'not-found', body: { error: 'Session not found', sessionId: other } });
    }
  });

  it('does not treat a longer id that starts with this one as this session', () => {
    expect(routeRequest(`/p/${id}x/`, base)).toEqual({
      kind: 'not-found',
      body: { error: 'Session not found', sessionId: `${id}x` },
    });
  });

  it('answers Not found for any other path', () => {
    for (const url of ['/', '/p', '/p/', '/src/App.jsx', '/@vite/client', `/x/p/${id}/`, '/health/x']) {
      expect(routeRequest(url, base)).toEqual({ kind: 'not-found', body: { error: 'Not found' } });
    }
  });

  it('decodes a percent-encoded other session id', () => {
    expect(routeRequest('/p/a%20b/', base)).toEqual({ kind: 'not-found', body: { error: 'Session not found', sessionId: 'a b' } });
    expect(routeRequest('/p/%E0%A4%A/', base)).toEqual({ kind: 'not-found', body: { error: 'Session not found', sessionId: '%E0%A4%A' } });
  });

  it('works with a custom base path', () => {
    expect(routeRequest('/preview/x/y.js', '/preview/x/')).toEqual({ kind: 'proxy' });
    expect(routeRequest('/preview/x', '/preview/x/')).toEqual({ kind: 'redirect', status: 308, location: '/preview/x/' });
  });
});
