import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import { DEMO_PROJECT_ID, PROVISION_STEPS, TEMPLATE_TYPES } from '@velocity/contracts';

/**
 * The preview page at `/`: plain HTML, CSS and ES modules from this folder, no
 * build step. It talks to the api like any client (GET and POST /v1/projects,
 * POST /v1/sessions, the SSE events with the build's diagnostics, extend and
 * DELETE to stop). Mounted in front of Nest's routes and body parser (see
 * bootstrap.ts); every other path goes on.
 */
const ASSETS: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/ui/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/ui/api.js': { file: 'api.js', type: 'text/javascript; charset=utf-8' },
  '/ui/events.js': { file: 'events.js', type: 'text/javascript; charset=utf-8' },
  '/ui/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
};

/** ES modules of packages the page imports, served from node_modules: the SSE parser of the system's own clients. */
const PACKAGE_MODULES: Record<string, string> = {
  '/ui/eventsource-parser.js': join(dirname(require.resolve('eventsource-parser/package.json')), 'dist/index.js'),
};

/** What the page needs to know about this deployment. */
const PAGE_CONFIG = JSON.stringify({ demoProjectId: DEMO_PROJECT_ID, templates: TEMPLATE_TYPES, steps: PROVISION_STEPS });

const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  // Previews may live on other origins (Fly): frames may load anything; the page itself is never framed.
  'content-security-policy': "default-src 'self'; frame-src *; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
};

export function previewPage(dir = __dirname) {
  // Read once: the files are small and ship with the code.
  const files = new Map(Object.values(ASSETS).map(({ file }) => [file, readFileSync(join(dir, file))]));
  const packageModules = new Map(Object.entries(PACKAGE_MODULES).map(([path, file]) => [path, readFileSync(file)]));

  return function previewPageMiddleware(req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) {
    if (req.method !== 'GET' && req.method !== 'HEAD') return next();
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/ui/config.json') return send(res, req, 200, 'application/json; charset=utf-8', Buffer.from(PAGE_CONFIG));
    const packageModule = packageModules.get(path);
    if (packageModule) return send(res, req, 200, 'text/javascript; charset=utf-8', packageModule);
    const asset = ASSETS[path];
    if (!asset) return next();
    send(res, req, 200, asset.type, files.get(asset.file)!);
  };
}

function send(res: ServerResponse, req: IncomingMessage, status: number, type: string, body: Buffer) {
  res.writeHead(status, { 'content-type': type, 'content-length': body.length, 'cache-control': 'no-cache', ...SECURITY_HEADERS });
  res.end(req.method === 'HEAD' ? undefined : body);
}
