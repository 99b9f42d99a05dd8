import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { SignJWT, generateKeyPair } from 'jose';
import { DEMO_PROJECT_ID, createMachineToken } from '@velocity/contracts';
import { rawRequest, type RawResponse, signToken, type TestUser } from '@velocity/testing';

/**
 * The bad-input suite's requests: malformed, forged, foreign or
 * excessive, each with the 4xx it must get. Every request here is one that must
 * change nothing; the suite checks the answers and that no row changed.
 */
export interface BadCase {
  /** The group, for the summary and for failures. */
  kind: string;
  /** What is wrong with it. */
  name: string;
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Bytes sent as is over a socket instead (what an HTTP client library refuses to send). */
  raw?: string;
  expect: {
    status: number | number[];
    /** The `field` the error must name; omitted when no single field is at fault (unknown route, floods). */
    field?: string;
    /** The message must match (floods: which limit). */
    message?: RegExp;
    /** A Retry-After header is required (429). */
    retryAfter?: boolean;
  };
}

/** A user of the running system, with a project and a live session (or ids of them). */
export interface Tenant {
  user: TestUser;
  /** A project of their own. */
  projectId: string;
  /** Their live session. */
  sessionId: string;
  /** The project of that session (their own or the demo). */
  sessionProjectId: string;
}

export interface BadInputFixture {
  jwtSecret: string;
  machineTokenSecret: string;
  /** MAX_FILE_BYTES of the system. */
  maxFileBytes: number;
  a: Tenant;
  b: Tenant;
}

const json = { 'content-type': 'application/json' };
const enc = encodeURIComponent;
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

/** Every case but the floods, in a fixed order. */
export async function badInputCases(f: BadInputFixture): Promise<BadCase[]> {
  const cases: BadCase[] = [];
  const add = (c: BadCase) => cases.push(c);
  const { a, b } = f;
  const asA = (headers: Record<string, string> = {}) => ({ ...a.user.auth, ...headers });
  const asB = (headers: Record<string, string> = {}) => ({ ...b.user.auth, ...headers });
  const body = (value: unknown) => (typeof value === 'string' ? value : JSON.stringify(value));

  // --- 1. tokens: no, malformed, forged, expired, wrong-alg and none-alg tokens on every user endpoint (401) ---
  // With a valid token each of these would change or read A's data: a bypass shows in the row snapshot.
  const endpoints: [string, string, unknown?][] = [
    ['POST', '/v1/sessions', { projectId: a.projectId }],
    ['GET', `/v1/sessions/${a.sessionId}`],
    ['GET', `/v1/sessions/${a.sessionId}/events`],
    ['POST', `/v1/sessions/${a.sessionId}/extend`, { seconds: 60 }],
    ['DELETE', `/v1/sessions/${a.sessionId}`],
    ['POST', '/v1/projects', { name: 'intruder' }],
    ['GET', `/v1/projects/${a.projectId}`],
    ['GET', `/v1/projects/${a.projectId}/files`],
    ['PUT', `/v1/projects/${a.projectId}/files/src/intruder.js`, { content: 'alert(1)' }],
    ['DELETE', `/v1/projects/${a.projectId}/files/index.html`],
  ];
  const now = Math.floor(Date.now() / 1000);
  const aToken = a.user.token;
  const [aHeader, , aSignature] = aToken.split('.');
  const rsa = await generateKeyPair('RS256');
  const tokens: [string, string | undefined][] = [
    ['no Authorization header', undefined],
    ['empty Authorization header', ''],
    ['"Bearer" without a token', 'Bearer'],
    ['Basic credentials', `Basic ${Buffer.from('admin:admin').toString('base64')}`],
    ['not a JWT', 'Bearer garbage'],
    ['three empty-ish parts', 'Bearer a.b.c'],
    ['two tokens', `Bearer ${aToken} Bearer ${aToken}`],
    ['"Bearer Bearer"', `Bearer Bearer ${aToken}`],
    ['token without scheme', aToken],
    ['expired', `Bearer ${await signToken(f.jwtSecret, { sub: a.user.id, expiresInSeconds: -120 })}`],
    ['forged (another secret)', `Bearer ${await signToken('not-the-secret-not-the-secret-not-the-secret', { sub: a.user.id })}`],
    ['HS512 with the right secret', `Bearer ${await signToken(f.jwtSecret, { sub: a.user.id, alg: 'HS512' })}`],
    ['HS384 with the right secret', `Bearer ${await signToken(f.jwtSecret, { sub: a.user.id, alg: 'HS384' })}`],
    ['alg none, unsigned', `Bearer ${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: a.user.id, role: 'authenticated', exp: now + 3600 })}.`],
    ['alg none, with a signature', `Bearer ${b64({ alg: 'none' })}.${b64({ sub: a.user.id, exp: now + 3600 })}.${aSignature}`],
    ['RS256 (no JWKS configured)', `Bearer ${await new SignJWT({ sub: a.user.id, exp: now + 3600 }).setProtectedHeader({ alg: 'RS256' }).sign(rsa.privateKey)}`],
    ["A's signature on B's claims", `Bearer ${aHeader}.${b64({ sub: b.user.id, aud: 'authenticated', role: 'authenticated', exp: now + 3600 })}.${aSignature}`],
    ['pro tier added to a signed token', `Bearer ${aHeader}.${b64({ sub: a.user.id, exp: now + 3600, app_metadata: { tier: 'pro' } })}.${aSignature}`],
    ['no sub', `Bearer ${await signToken(f.jwtSecret, { claims: { sub: undefined } })}`],
    ['SQL in sub', `Bearer ${await signToken(f.jwtSecret, { sub: "' OR '1'='1' --" })}`],
    ['no exp', `Bearer ${await signToken(f.jwtSecret, { sub: a.user.id, claims: { exp: undefined } })}`],
    ['aud anon', `Bearer ${await signToken(f.jwtSecret, { sub: a.user.id, claims: { aud: 'anon' } })}`],
    ['role service_role', `Bearer ${await signToken(f.jwtSecret, { sub: a.user.id, claims: { role: 'service_role' } })}`],
    ['not valid yet (nbf)', `Bearer ${await signToken(f.jwtSecret, { sub: a.user.id, claims: { nbf: now + 3600 } })}`],
    ['9000-character token', `Bearer ${'a'.repeat(9000)}`],
  ];
  for (const [what, authorization] of tokens) {
    for (const [method, path, payload] of endpoints) {
      add({
        kind: 'token',
        name: `${what}: ${method} ${path}`,
        method,
        path,
        headers: { ...(payload === undefined ? {} : json), ...(authorization === undefined ? {} : { authorization }) },
        body: payload === undefined ? undefined : body(payload),
        expect: { status: 401, field: 'authorization' },
      });
    }
  }

  // --- 2. malformed ids in every id position: wrong form, NUL, unicode, injection, traversal, huge (400) ---
  const badIds: [string, string, string?][] = [
    ['not a uuid', 'not-a-uuid'],
    ['NUL', '%00'],
    ['uuid + NUL', `${a.sessionId}%00`],
    ['uuid + NUL + suffix', `${a.sessionId.slice(0, 8)}%00${a.sessionId.slice(9)}`],
    ['one character short', a.sessionId.slice(0, -1)],
    ['one character long', `${a.sessionId}0`],
    ['fullwidth digits', enc('５５０e8400-e29b-41d4-a716-446655440000')],
    ['zero-width space', enc(`${a.sessionId}\u200b`)],
    ['right-to-left override', enc(`\u202e${a.sessionId}`)],
    ['emoji', enc('😀')],
    ['SQL injection', enc("' OR '1'='1")],
    ['SQL injection (stacked)', enc(`${a.sessionId}'; drop table preview_sessions; --`)],
    ['NoSQL operator', enc('{"$ne":null}')],
    ['encoded traversal', '..%2F..%2Fetc%2Fpasswd'],
    ['trailing space', `${a.sessionId}%20`],
    ['5000 characters', 'a'.repeat(5000)],
    ['broken percent-encoding', '%E0%A4%A', 'path'],
    ['overlong UTF-8', '%C0%AE%C0%AE', 'path'],
  ];
  const idTemplates: [string, (id: string) => string, unknown?][] = [
    ['GET', (id) => `/v1/sessions/${id}`],
    ['GET', (id) => `/v1/sessions/${id}/events`],
    ['POST', (id) => `/v1/sessions/${id}/extend`, { seconds: 60 }],
    ['DELETE', (id) => `/v1/sessions/${id}`],
    ['GET', (id) => `/v1/projects/${id}`],
    ['GET', (id) => `/v1/projects/${id}/files`],
    ['PUT', (id) => `/v1/projects/${id}/files/src/a.js`, { content: 'x' }],
    ['DELETE', (id) => `/v1/projects/${id}/files/src/a.js`],
  ];
  for (const [what, id, field] of badIds) {
    for (const [method, path, payload] of idTemplates) {
      add({
        kind: 'id',
        name: `${what}: ${method} ${path('<id>')}`,
        method,
        path: path(id),
        headers: asA(payload === undefined ? {} : json),
        body: payload === undefined ? undefined : body(payload),
        expect: { status: 400, field: field ?? 'id' },
      });
    }
  }

  // --- 3. bodies: wrong types, unknown fields (owner!), prototype keys, not JSON, too deep, too large (400/413) ---
  const bodies: [string, string, string | Buffer, number, string][] = [
    // [route, what, body, status, field]
    ['POST /v1/sessions', 'empty object', '{}', 400, 'projectId'],
    ['POST /v1/sessions', 'projectId a number', body({ projectId: 123 }), 400, 'projectId'],
    ['POST /v1/sessions', 'projectId null', body({ projectId: null }), 400, 'projectId'],
    ['POST /v1/sessions', 'projectId an array', body({ projectId: [a.projectId] }), 400, 'projectId'],
    ['POST /v1/sessions', 'projectId an operator object', body({ projectId: { $ne: null } }), 400, 'projectId'],
    ['POST /v1/sessions', 'projectId with a trailing space', body({ projectId: `${a.projectId} ` }), 400, 'projectId'],
    ['POST /v1/sessions', 'projectId SQL', body({ projectId: "' OR 1=1 --" }), 400, 'projectId'],
    ['POST /v1/sessions', 'projectId with NUL', body({ projectId: `${a.projectId}\u0000` }), 400, 'projectId'],
    ['POST /v1/sessions', 'projectId fullwidth', body({ projectId: '５５０e8400-e29b-41d4-a716-446655440000' }), 400, 'projectId'],
    ['POST /v1/sessions', 'duplicate key, last one bad', `{"projectId":"${a.projectId}","projectId":"x"}`, 400, 'projectId'],
    ['POST /v1/sessions', 'tier PRO', body({ projectId: a.projectId, tier: 'PRO' }), 400, 'tier'],
    ['POST /v1/sessions', 'tier enterprise', body({ projectId: a.projectId, tier: 'enterprise' }), 400, 'tier'],
    ['POST /v1/sessions', 'tier a number', body({ projectId: a.projectId, tier: 1 }), 400, 'tier'],
    ['POST /v1/sessions', 'tier null', body({ projectId: a.projectId, tier: null }), 400, 'tier'],
    ['POST /v1/sessions', 'owner field', body({ projectId: a.projectId, owner: b.user.id }), 400, 'owner'],
    ['POST /v1/sessions', 'ownerId field', body({ projectId: a.projectId, ownerId: b.user.id }), 400, 'ownerId'],
    ['POST /v1/sessions', 'status field', body({ projectId: a.projectId, status: 'active' }), 400, 'status'],
    ['POST /v1/sessions', '__proto__ key', `{"projectId":"${a.projectId}","__proto__":{"tier":"pro"}}`, 400, '__proto__'],
    ['POST /v1/sessions', 'constructor key', `{"projectId":"${a.projectId}","constructor":{"prototype":{"tier":"pro"}}}`, 400, 'constructor'],
    ['POST /v1/sessions', 'an array', body([a.projectId]), 400, 'body'],
    ['POST /v1/sessions', 'a string', '"projectId"', 400, 'body'],
    ['POST /v1/sessions', 'a number', '123', 400, 'body'],
    ['POST /v1/sessions', 'null', 'null', 400, 'body'],
    ['POST /v1/sessions', 'truncated JSON', '{"projectId":', 400, 'body'],
    ['POST /v1/sessions', 'unquoted keys', `{projectId: "${a.projectId}"}`, 400, 'body'],
    ['POST /v1/sessions', 'single quotes', `{'projectId': '${a.projectId}'}`, 400, 'body'],
    ['POST /v1/sessions', 'NaN', '{"projectId": NaN}', 400, 'body'],
    ['POST /v1/sessions', 'trailing garbage', `{"projectId":"${a.projectId}"} x`, 400, 'body'],
    ['POST /v1/sessions', 'invalid UTF-8', Buffer.concat([Buffer.from('{"projectId":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]), 400, 'body'],
    ['POST /v1/sessions', '5000 levels deep', `{"projectId":${'['.repeat(5000)}${']'.repeat(5000)}}`, 400, 'projectId'],
    ['POST /v1/sessions', '70 kB', body({ projectId: a.projectId, pad: 'x'.repeat(70_000) }), 413, 'body'],
    ['POST /v1/sessions', '2 MB', body({ projectId: 'x'.repeat(2_000_000) }), 413, 'body'],
    ['POST /v1/projects', 'empty object', '{}', 400, 'name'],
    ['POST /v1/projects', 'empty name', body({ name: '' }), 400, 'name'],
    ['POST /v1/projects', 'blank name', body({ name: '   ' }), 400, 'name'],
    ['POST /v1/projects', '201-character name', body({ name: 'x'.repeat(201) }), 400, 'name'],
    ['POST /v1/projects', 'NUL in name', body({ name: 'a\u0000b' }), 400, 'name'],
    ['POST /v1/projects', 'newline in name', body({ name: 'a\r\nSet-Cookie: x=y' }), 400, 'name'],
    ['POST /v1/projects', 'lone surrogate in name', body({ name: 'a\ud800b' }), 400, 'name'],
    ['POST /v1/projects', 'name a number', body({ name: 7 }), 400, 'name'],
    ['POST /v1/projects', 'name an array', body({ name: ['x'] }), 400, 'name'],
    ['POST /v1/projects', 'name an object', body({ name: { toString: 'x' } }), 400, 'name'],
    ['POST /v1/projects', 'templateType angular', body({ name: 'x', templateType: 'angular' }), 400, 'templateType'],
    ['POST /v1/projects', 'templateType traversal', body({ name: 'x', templateType: '../../etc' }), 400, 'templateType'],
    ['POST /v1/projects', 'ownerId field', body({ name: 'x', ownerId: b.user.id }), 400, 'ownerId'],
    ['POST /v1/projects', 'owner_id field', body({ name: 'x', owner_id: b.user.id }), 400, 'owner_id'],
    ['POST /v1/projects', 'id field', body({ name: 'x', id: b.projectId }), 400, 'id'],
    ['POST /v1/projects', '70 kB', body({ name: 'x', pad: 'y'.repeat(70_000) }), 413, 'body'],
    [`POST /v1/sessions/${a.sessionId}/extend`, 'empty object', '{}', 400, 'seconds'],
    [`POST /v1/sessions/${a.sessionId}/extend`, 'negative', body({ seconds: -1 }), 400, 'seconds'],
    [`POST /v1/sessions/${a.sessionId}/extend`, 'zero', body({ seconds: 0 }), 400, 'seconds'],
    [`POST /v1/sessions/${a.sessionId}/extend`, 'fraction', body({ seconds: 1.5 }), 400, 'seconds'],
    [`POST /v1/sessions/${a.sessionId}/extend`, 'a string', body({ seconds: '60' }), 400, 'seconds'],
    [`POST /v1/sessions/${a.sessionId}/extend`, '1e308', '{"seconds":1e308}', 400, 'seconds'],
    [`POST /v1/sessions/${a.sessionId}/extend`, 'beyond a week', body({ seconds: 7 * 24 * 3600 + 1 }), 400, 'seconds'],
    [`POST /v1/sessions/${a.sessionId}/extend`, 'null', body({ seconds: null }), 400, 'seconds'],
    [`POST /v1/sessions/${a.sessionId}/extend`, 'extra field', body({ seconds: 60, expiresAt: '2099-01-01T00:00:00Z' }), 400, 'expiresAt'],
    [`POST /v1/sessions/${a.sessionId}/extend`, 'Infinity', '{"seconds":Infinity}', 400, 'body'],
    [`PUT /v1/projects/${a.projectId}/files/src/new.js`, 'empty object', '{}', 400, 'content'],
    [`PUT /v1/projects/${a.projectId}/files/src/new.js`, 'content a number', body({ content: 1 }), 400, 'content'],
    [`PUT /v1/projects/${a.projectId}/files/src/new.js`, 'content null', body({ content: null }), 400, 'content'],
    [`PUT /v1/projects/${a.projectId}/files/src/new.js`, 'content an array', body({ content: ['a'] }), 400, 'content'],
    [`PUT /v1/projects/${a.projectId}/files/src/new.js`, 'mode field', body({ content: 'x', mode: '0777' }), 400, 'mode'],
    [`PUT /v1/projects/${a.projectId}/files/src/new.js`, 'path field', body({ content: 'x', path: '../../etc/passwd' }), 400, 'path'],
    [`PUT /v1/projects/${a.projectId}/files/src/new.js`, 'NUL in content', body({ content: 'binary\u0000data' }), 400, 'content'],
    [`PUT /v1/projects/${a.projectId}/files/src/new.js`, 'content over MAX_FILE_BYTES', body({ content: 'x'.repeat(f.maxFileBytes + 1) }), 413, 'content'],
    [`PUT /v1/projects/${a.projectId}/files/src/new.js`, 'body over the file limit', body({ content: 'x'.repeat(Math.ceil(f.maxFileBytes * 1.5) + 70 * 1024) }), 413, 'body'],
  ];
  for (const [route, what, payload, status, field] of bodies) {
    const [method, path] = route.split(' ');
    add({ kind: 'body', name: `${what}: ${route}`, method, path, headers: asA(json), body: payload, expect: { status, field } });
  }

  // --- 4. content types and encodings (415) ---
  const validSession = body({ projectId: a.projectId });
  const types: [string, Record<string, string>, string, number, string][] = [
    ['text/plain', { 'content-type': 'text/plain' }, validSession, 415, 'content-type'],
    ['form', { 'content-type': 'application/x-www-form-urlencoded' }, `projectId=${a.projectId}`, 415, 'content-type'],
    ['multipart', { 'content-type': 'multipart/form-data; boundary=x' }, `--x\r\nContent-Disposition: form-data; name="projectId"\r\n\r\n${a.projectId}\r\n--x--`, 415, 'content-type'],
    ['xml', { 'content-type': 'application/xml' }, `<projectId>${a.projectId}</projectId>`, 415, 'content-type'],
    ['json-patch', { 'content-type': 'application/json-patch+json' }, validSession, 415, 'content-type'],
    ['no content type', {}, validSession, 415, 'content-type'],
    ['latin1 charset', { 'content-type': 'application/json; charset=latin1' }, validSession, 415, 'content-type'],
    ['utf-16 charset', { 'content-type': 'application/json; charset=utf-16' }, validSession, 415, 'content-type'],
    ['unknown content encoding', { ...json, 'content-encoding': 'compress' }, validSession, 415, 'content-encoding'],
    ['gzip that is not gzip', { ...json, 'content-encoding': 'gzip' }, validSession, 400, 'body'],
    ['upper-case type, bad body', { 'content-type': 'APPLICATION/JSON' }, '{}', 400, 'projectId'],
  ];
  for (const [what, headers, payload, status, field] of types) {
    add({ kind: 'content-type', name: `${what}: POST /v1/sessions`, method: 'POST', path: '/v1/sessions', headers: asA(headers), body: payload, expect: { status, field } });
  }
  // --- 5. path traversal and other refused file paths, on A's own project (400 naming path) ---
  const badPaths = [
    '%2e%2e/evil.js',
    '..%2fevil.js',
    '../evil.js',
    'src/../../evil.js',
    'src/%2E%2E/%2E%2E/%2E%2E/etc/passwd',
    '%2Fetc%2Fpasswd',
    '%2F%2Fserver%2Fshare',
    '%5C..%5Cevil.js',
    'C:%5Cwindows%5Cwin.ini',
    'src//a.js',
    'src/',
    'evil%00.js',
    'a%0d%0aSet-Cookie:%20x.js',
    'node_modules/react/index.js',
    '.git/config',
    '.vite-cache/deps/x.js',
    '%C0%AE%C0%AE/evil.js',
    '%20/x.js',
    '.',
    `${'a'.repeat(300)}.js`,
    'a/'.repeat(600) + 'a.js',
  ];
  for (const path of badPaths) {
    for (const method of ['PUT', 'DELETE']) {
      add({
        kind: 'path',
        name: `${method} file ${path.slice(0, 40)}`,
        method,
        path: `/v1/projects/${a.projectId}/files/${path}`,
        headers: asA(method === 'PUT' ? json : {}),
        body: method === 'PUT' ? body({ content: 'pwned' }) : undefined,
        expect: { status: 400, field: 'path' },
      });
    }
  }

  // --- 6. tenants: a user with the other's ids (404, like an unknown id), tiers (403), the demo project (403) ---
  const foreign = (who: 'A' | 'B', me: Tenant, them: Tenant, auth: (h?: Record<string, string>) => Record<string, string>) => {
    const list: [string, string, unknown?][] = [
      ['GET', `/v1/sessions/${them.sessionId}`],
      ['GET', `/v1/sessions/${them.sessionId.toUpperCase()}`],
      ['GET', `/v1/sessions/${them.sessionId}/events`],
      ['POST', `/v1/sessions/${them.sessionId}/extend`, { seconds: 60 }],
      ['DELETE', `/v1/sessions/${them.sessionId}`],
      ['DELETE', `/V1/SESSIONS/${them.sessionId}`],
      ['GET', `/v1/projects/${them.projectId}`],
      ['GET', `/v1/projects/${them.projectId.toUpperCase()}/files`],
      ['GET', `/v1/projects/${them.projectId}/files`],
      ['PUT', `/v1/projects/${them.projectId}/files/src/App.jsx`, { content: 'export default () => "owned";' }],
      ['PUT', `/v1/projects/${them.projectId}/files/${enc("'; drop table projects; --.js")}`, { content: 'x' }],
      ['DELETE', `/v1/projects/${them.projectId}/files/index.html`],
      ['POST', '/v1/sessions', { projectId: them.projectId }],
    ];
    for (const [method, path, payload] of list) {
      add({
        kind: 'tenant',
        name: `${who} with the other's ids: ${method} ${path}`,
        method,
        path,
        headers: auth(payload === undefined ? {} : json),
        body: payload === undefined ? undefined : body(payload),
        expect: { status: 404 },
      });
    }
    void me;
  };
  foreign('A', a, b, asA);
  foreign('B', b, a, asB);
  for (const [who, auth, projectId] of [['A', asA, a.projectId], ['B', asB, b.projectId]] as const) {
    add({ kind: 'tenant', name: `${who} asks for a pro session on the free tier`, method: 'POST', path: '/v1/sessions', headers: auth(json), body: body({ projectId, tier: 'pro' }), expect: { status: 403, field: 'tier' } });
    add({ kind: 'tenant', name: `${who} writes a demo project file`, method: 'PUT', path: `/v1/projects/${DEMO_PROJECT_ID}/files/src/App.jsx`, headers: auth(json), body: body({ content: 'defaced' }), expect: { status: 403, field: 'id' } });
    add({ kind: 'tenant', name: `${who} deletes a demo project file`, method: 'DELETE', path: `/v1/projects/${DEMO_PROJECT_ID}/files/index.html`, headers: auth(), expect: { status: 403, field: 'id' } });
  }
  const selfPromoted = await signToken(f.jwtSecret, { sub: a.user.id, claims: { user_metadata: { tier: 'pro' } } });
  add({ kind: 'tenant', name: 'pro tier in user_metadata (the user can write it)', method: 'POST', path: '/v1/sessions', headers: { ...json, authorization: `Bearer ${selfPromoted}` }, body: body({ projectId: a.projectId, tier: 'pro' }), expect: { status: 403, field: 'tier' } });
  for (const [method, path] of [['GET', `/v1/sessions/${randomUUID()}`], ['GET', `/v1/projects/${randomUUID()}/files`], ['DELETE', `/v1/sessions/${randomUUID()}`]]) {
    add({ kind: 'tenant', name: `unknown id: ${method} ${path}`, method, path, headers: asA(), expect: { status: 404 } });
  }

  // --- 7. machine surfaces: route lookups and machine endpoints need the right machine token (401/403) ---
  const bMachine = createMachineToken({ sessionId: b.sessionId, projectId: b.sessionProjectId }, f.machineTokenSecret, 600);
  const expiredMachine = createMachineToken({ sessionId: a.sessionId, projectId: a.sessionProjectId }, f.machineTokenSecret, -10);
  const forgedMachine = createMachineToken({ sessionId: a.sessionId, projectId: a.sessionProjectId }, 'not-the-machine-secret-at-all', 600);
  const machineCases: [string, string, Record<string, string>, string | undefined, number][] = [
    ['GET', `/v1/routes/${a.sessionId}`, {}, undefined, 401],
    ['GET', `/v1/routes/${a.sessionId}`, asA(), undefined, 401],
    ['GET', `/v1/routes/${a.sessionId}`, { authorization: `Bearer ${forgedMachine}` }, undefined, 401],
    ['GET', '/v1/routes/not-a-uuid', {}, undefined, 401],
    ['GET', `/v1/machines/${a.sessionId}/files`, {}, undefined, 401],
    ['GET', `/v1/machines/${a.sessionId}/files`, asA(), undefined, 401],
    ['GET', `/v1/machines/${a.sessionId}/files`, { authorization: `Bearer ${expiredMachine}` }, undefined, 401],
    ['GET', `/v1/machines/${a.sessionId}/files`, { authorization: `Bearer ${forgedMachine}` }, undefined, 401],
    ['GET', `/v1/machines/${a.sessionId}/files`, { authorization: `Bearer ${bMachine}` }, undefined, 403],
    ['GET', `/v1/machines/${a.sessionId}/file-changes`, { authorization: `Bearer ${bMachine}` }, undefined, 403],
    ['POST', `/v1/machines/${a.sessionId}/activity`, { ...json, authorization: `Bearer ${bMachine}` }, body({ lastActivityAt: new Date().toISOString() }), 403],
    ['POST', `/v1/machines/${a.sessionId}/activity`, json, body({ lastActivityAt: new Date().toISOString() }), 401],
    ['POST', `/v1/machines/${b.sessionId}/activity`, { ...json, authorization: `Bearer ${bMachine}` }, body({ lastActivityAt: 'yesterday' }), 400],
  ];
  for (const [method, path, headers, payload, status] of machineCases) {
    add({
      kind: 'machine',
      name: `${method} ${path} (${status})`,
      method,
      path,
      headers,
      body: payload,
      expect: { status, ...(status === 401 ? { field: 'authorization' } : status === 400 ? { field: 'lastActivityAt' } : {}) },
    });
  }

  // --- 8. previews (public): origins that are no session (404 from the edge), old links that are no preview ---
  for (const label of ['not-a-uuid', randomUUID(), 'x'.repeat(63), 'xn--80ak6aa92e', `${randomUUID()}.${randomUUID()}`]) {
    add({ kind: 'preview', name: `GET / on ${label}.localhost`, method: 'GET', path: '/', headers: { host: `${label}.localhost` }, expect: { status: 404 } });
  }
  add({ kind: 'preview', name: 'traversal on a preview origin', method: 'GET', path: '/../../etc/passwd', headers: { host: `${randomUUID()}.localhost` }, expect: { status: 404 } });
  for (const id of ['not-a-uuid', '%00', '..', '%E0%A4%A', enc("' OR 1=1 --")]) {
    add({ kind: 'preview', name: `GET /p/${id}/ (no preview link)`, method: 'GET', path: `/p/${id}/`, expect: { status: 404 } });
  }
  add({ kind: 'preview', name: 'traversal out of /p/', method: 'GET', path: '/p/../../etc/passwd', expect: { status: 404 } });

  // --- 9. headers: injection and garbage in the ones the api reads, oversized headers and URLs ---
  const lastEventIds = ["1-0' OR 1=1 --", '0', '-1-0', '1-', '99999999999999999999-0', '1-0 1-0', 'x'.repeat(1000), '1.5-0', '%00'];
  for (const value of lastEventIds) {
    add({ kind: 'header', name: `Last-Event-ID ${value.slice(0, 30)}`, method: 'GET', path: `/v1/sessions/${a.sessionId}/events`, headers: asA({ 'last-event-id': value }), expect: { status: 400, field: 'Last-Event-ID' } });
  }
  add({ kind: 'header', name: 'odd x-request-id, bad id', method: 'GET', path: '/v1/sessions/x', headers: asA({ 'x-request-id': '"><script>alert(1)</script>' }), expect: { status: 400, field: 'id' } });
  add({ kind: 'header', name: 'long x-request-id, bad id', method: 'GET', path: '/v1/sessions/x', headers: asA({ 'x-request-id': 'r'.repeat(4000) }), expect: { status: 400, field: 'id' } });
  add({ kind: 'header', name: 'latin1 bytes in a header, bad id', method: 'GET', path: '/v1/sessions/x', headers: asA({ 'x-note': 'caf\u00e9 \u00ff' }), expect: { status: 400, field: 'id' } });
  add({ kind: 'header', name: 'forged Host, bad id', method: 'GET', path: '/v1/sessions/x', headers: asA({ host: 'evil.example' }), expect: { status: 400, field: 'id' } });
  add({ kind: 'header', name: 'X-Forwarded-For spoofing, bad id', method: 'GET', path: '/v1/sessions/x', headers: asA({ 'x-forwarded-for': '127.0.0.1, 10.0.0.1' }), expect: { status: 400, field: 'id' } });
  add({ kind: 'header', name: '17 kB header', method: 'GET', path: `/v1/sessions/${a.sessionId}`, headers: asA({ 'x-big': 'x'.repeat(17_000) }), expect: { status: 431, field: 'headers' } });
  add({ kind: 'header', name: '20 kB URL', method: 'GET', path: `/v1/sessions/${'a'.repeat(20_000)}`, headers: asA(), expect: { status: 431, field: 'headers' } });
  add({ kind: 'header', name: 'query parameter', method: 'GET', path: `/v1/sessions/${a.sessionId}?owner_id=${b.user.id}`, headers: asA(), expect: { status: 400, field: 'query.owner_id' } });
  add({ kind: 'header', name: 'SQL in a query parameter', method: 'GET', path: `/v1/projects/${a.projectId}/files?path=${enc("' OR 1=1 --")}`, headers: asA(), expect: { status: 400, field: 'query.path' } });
  add({ kind: 'header', name: 'prototype in a query parameter', method: 'POST', path: '/v1/sessions?__proto__[tier]=pro', headers: asA(json), body: validSession, expect: { status: 400, field: 'query.__proto__[tier]' } });

  // --- 10. bytes an HTTP library will not send: Node's parser refuses them (400/431, JSON) ---
  const host = 'Host: 127.0.0.1\r\nConnection: close\r\n';
  const raws: [string, string, number, string?][] = [
    ['CR inside a header value (response splitting)', `GET /v1/sessions/x HTTP/1.1\r\n${host}X-A: a\rSet-Cookie: x=y\r\n\r\n`, 400, 'request'],
    ['NUL in a header value', `GET /v1/sessions/x HTTP/1.1\r\n${host}X-A: a\u0000b\r\n\r\n`, 400, 'request'],
    ['NUL in the request line', `GET /v1/sessions/\u0000 HTTP/1.1\r\n${host}\r\n`, 400, 'request'],
    ['space in the URL', `GET /v1/sessions/a b HTTP/1.1\r\n${host}\r\n`, 400, 'request'],
    ['not HTTP at all', 'GARBAGE\r\n\r\n', 400, 'request'],
    ['header name with a space', `GET /v1/sessions/x HTTP/1.1\r\n${host}Bad Header: x\r\n\r\n`, 400, 'request'],
    ['folded header line', `GET /v1/sessions/x HTTP/1.1\r\n${host}X-A: a\r\n b\r\n\r\n`, 400, 'request'],
    ['Content-Length and Transfer-Encoding (smuggling)', `POST /v1/sessions HTTP/1.1\r\n${host}Content-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400, 'request'],
    ['two different Content-Lengths', `POST /v1/sessions HTTP/1.1\r\n${host}Content-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}`, 400, 'request'],
    ['unicode in the request line', `GET /v1/sessions/\u00e9\u00e9 HTTP/1.1\r\n${host}\r\n`, 400],
  ];
  for (const [what, raw, status, field] of raws) {
    add({ kind: 'raw', name: what, method: 'RAW', path: raw.split('\r\n')[0].slice(0, 60), raw, expect: { status, ...(field ? { field } : {}) } });
  }

  // --- 11. routes and methods that do not exist (404) ---
  for (const [method, path] of [
    ['PATCH', `/v1/sessions/${a.sessionId}`],
    ['PUT', '/v1/sessions'],
    ['DELETE', `/v1/projects/${a.projectId}`],
    ['POST', `/v1/projects/${a.projectId}`],
    ['GET', '/v1/sess%00ions'],
    ['GET', '/v1/sessions/../projects'],
    ['GET', '/v1/admin/sessions'],
  ]) {
    const hasBody = ['PATCH', 'PUT', 'POST'].includes(method);
    add({ kind: 'route', name: `${method} ${path}`, method, path, headers: asA(hasBody ? json : {}), body: hasBody ? '{}' : undefined, expect: { status: 404 } });
  }
  return cases;
}

/** Valid requests from users already at their live-session quota: every one 429 (the quota, then the rate limit). */
export function floodCases(tenant: Tenant, count: number, label: string): BadCase[] {
  return Array.from({ length: count }, (_, i) => ({
    kind: 'flood',
    name: `${label} #${i + 1}`,
    method: 'POST',
    path: '/v1/sessions',
    headers: { ...tenant.user.auth, ...json },
    body: JSON.stringify({ projectId: tenant.sessionProjectId }),
    expect: { status: 429, message: /QUOTA_FREE_CONCURRENT|RATE_LIMIT_SESSIONS_PER_MINUTE/, retryAfter: true },
  }));
}

/** Sends one case; raw cases go over a socket as they are. */
export async function sendCase(baseUrl: string, c: BadCase): Promise<RawResponse> {
  if (c.raw !== undefined) return rawSocket(baseUrl, c.raw);
  return rawRequest(baseUrl, c.method, c.path, { headers: c.headers, body: c.body, timeoutMs: 15_000 });
}

/** What is wrong with the answer to a case, or null when it is what the case expects. */
export function problemWith(c: BadCase, res: RawResponse): string | null {
  const statuses = ([] as number[]).concat(c.expect.status);
  const b = res.body as { statusCode?: unknown; message?: unknown; error?: unknown; field?: unknown } | undefined;
  const shown = `${res.status} ${res.text.slice(0, 300)}`;
  if (res.status >= 500) return `5xx: ${shown}`;
  if (!statuses.includes(res.status)) return `expected ${statuses.join('|')}, got ${shown}`;
  if (!b || typeof b !== 'object') return `the body is not a JSON object: ${shown}`;
  // The preview edge answers `{ error, sessionId }`; everything else `{ statusCode, error, message, field? }`.
  const message = c.kind === 'preview' ? b.error : b.message;
  if (typeof message !== 'string' || message.length === 0) return `no message: ${shown}`;
  if (c.kind !== 'preview' && b.statusCode !== res.status) return `statusCode ${String(b.statusCode)} in a ${res.status}: ${shown}`;
  if (c.expect.field !== undefined && b.field !== c.expect.field) return `expected field ${c.expect.field}, got ${String(b.field)}: ${shown}`;
  if (c.expect.message && !c.expect.message.test(message)) return `message does not match ${c.expect.message}: ${shown}`;
  if (c.expect.retryAfter && !/^\d+$/.test(String(res.headers['retry-after'] ?? ''))) return `no Retry-After: ${shown}`;
  return null;
}

/** Raw bytes to the api and its answer, parsed enough for problemWith (the api closes the connection). */
function rawSocket(baseUrl: string, bytes: string): Promise<RawResponse> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    socket.setTimeout(10_000, () => socket.destroy(new Error('raw request: no answer in 10 s')));
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const [head, ...rest] = text.split('\r\n\r\n');
      const [statusLine, ...headerLines] = head.split('\r\n');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0);
      const headers = Object.fromEntries(headerLines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
      const bodyText = rest.join('\r\n\r\n');
      let body: unknown = bodyText || undefined;
      try {
        body = JSON.parse(bodyText);
      } catch {
        // not JSON: problemWith says so
      }
      resolve({ status, headers, body, text: text.slice(0, 500) });
    });
    socket.end(Buffer.from(bytes, 'latin1'));
  });
}
