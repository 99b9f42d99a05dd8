import { createServer, type Server } from 'node:http';
import { SignJWT, exportJWK, exportSPKI, generateKeyPair, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { loadConfig } from '@velocity/contracts';
import { authSettingsOf } from './auth-settings';
import { TokenError, TokenVerifier } from './token-verifier';

const SECRET = 'super-secret-jwt-token-with-at-least-32-characters-long';
const USER = '6a1f6a0e-6c1b-4f3e-9d7a-0d4c8f1e2b3a';
const enc = (s: string) => new TextEncoder().encode(s);
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

/** A token as Supabase Auth issues it (claims overridable, `undefined` removes one). */
async function hs256(claims: Record<string, unknown> = {}, secret = SECRET, alg = 'HS256'): Promise<string> {
  const payload: JWTPayload = { sub: USER, aud: 'authenticated', role: 'authenticated', iat: now(), exp: now() + 3600, ...claims };
  for (const [k, v] of Object.entries(payload)) if (v === undefined) delete payload[k];
  return new SignJWT(payload).setProtectedHeader({ alg, typ: 'JWT' }).sign(enc(secret));
}

/** Expects verify() to refuse with a 401 whose reason matches. */
async function refused(verifier: TokenVerifier, token: string, reason: RegExp, status = 401) {
  const err = await verifier.verify(token).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TokenError);
  expect((err as TokenError).status).toBe(status);
  expect((err as TokenError).message).toMatch(reason);
}

describe('TokenVerifier with SUPABASE_JWT_SECRET (HS256)', () => {
  const verifier = new TokenVerifier({ secret: SECRET, audience: 'authenticated' });

  it('accepts a valid token: the user is its sub, the tier its app_metadata.tier (free otherwise)', async () => {
    expect(await verifier.verify(await hs256())).toEqual({ id: USER, tier: 'free', local: false });
    expect(await verifier.verify(await hs256({ app_metadata: { provider: 'email', tier: 'pro' } }))).toMatchObject({ tier: 'pro' });
    // user_metadata is the user's own to write: never a source of the tier.
    expect(await verifier.verify(await hs256({ user_metadata: { tier: 'pro' } }))).toMatchObject({ tier: 'free' });
    expect(await verifier.verify(await hs256({ app_metadata: { tier: 'platinum' } }))).toMatchObject({ tier: 'free' });
    // No aud: accepted (aud is checked when present); an array containing it: accepted.
    expect(await verifier.verify(await hs256({ aud: undefined }))).toMatchObject({ id: USER });
    expect(await verifier.verify(await hs256({ aud: ['other', 'authenticated'] }))).toMatchObject({ id: USER });
  });

  it('refuses a token signed with another secret', async () => {
    await refused(verifier, await hs256({}, 'another-secret-that-is-also-32-characters-long'), /signature is not valid/);
  });

  it('refuses an expired token, and one not valid yet', async () => {
    await refused(verifier, await hs256({ iat: now() - 7200, exp: now() - 60 }), /expired/);
    await refused(verifier, await hs256({ nbf: now() + 600 }), /"nbf" claim/);
  });

  it('refuses alg none, with or without a signature', async () => {
    const unsigned = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: USER, exp: now() + 3600 })}.`;
    await refused(verifier, unsigned, /not a signed JWT/);
    await refused(verifier, `${unsigned}c2ln`, /algorithm "none" is not accepted/);
    await refused(verifier, `${b64({ alg: 'NONE' })}.${b64({ sub: USER, exp: now() + 3600 })}.c2ln`, /algorithm "NONE" is not accepted/);
  });

  it('refuses other algorithms, even with the right secret (HS512, HS384), and an asymmetric one without a JWKS', async () => {
    await refused(verifier, await hs256({}, SECRET, 'HS512'), /algorithm "HS512" is not accepted/);
    await refused(verifier, await hs256({}, SECRET, 'HS384'), /algorithm "HS384" is not accepted/);
    const { privateKey } = await generateKeyPair('RS256');
    const rs = await new SignJWT({ sub: USER, exp: now() + 60 }).setProtectedHeader({ alg: 'RS256' }).sign(privateKey);
    await refused(verifier, rs, /algorithm "RS256" is not accepted/);
  });

  it('requires sub (a uuid) and exp; refuses a wrong aud, a role other than authenticated, a wrong iss', async () => {
    await refused(verifier, await hs256({ exp: undefined }), /"exp" claim/);
    await refused(verifier, await hs256({ sub: undefined }), /"sub" claim/);
    await refused(verifier, await hs256({ sub: "1' or '1'='1" }), /"sub" claim is not a user id/);
    await refused(verifier, await hs256({ aud: 'anon' }), /"aud" claim is not "authenticated"/);
    // The anon key and the service-role key are JWTs too, but not users.
    await refused(verifier, await hs256({ role: 'service_role' }), /"role" claim/);
    await refused(verifier, await hs256({ role: 'anon', sub: undefined }), /"sub" claim/);
    const withIssuer = new TokenVerifier({ secret: SECRET, audience: 'authenticated', issuer: 'https://ref.supabase.co/auth/v1' });
    await refused(withIssuer, await hs256({ iss: 'https://evil.example/auth/v1' }), /"iss" claim/);
    expect(await withIssuer.verify(await hs256({ iss: 'https://ref.supabase.co/auth/v1' }))).toMatchObject({ id: USER });
  });

  it('refuses garbage: not three parts, bad base64, a header that is not JSON, a tampered payload, a huge token', async () => {
    await refused(verifier, 'abc', /not a signed JWT/);
    await refused(verifier, 'a.b.c.d', /not a signed JWT/);
    await refused(verifier, 'a b.c.d', /not a signed JWT/);
    await refused(verifier, `${Buffer.from('{not json').toString('base64url')}.e30.c2ln`, /header is not valid/);
    const [header, , signature] = (await hs256()).split('.');
    await refused(verifier, `${header}.${b64({ sub: USER, exp: now() + 3600, app_metadata: { tier: 'pro' } })}.${signature}`, /signature is not valid/);
    await refused(verifier, `${'a'.repeat(9000)}.b.c`, /longer than 8192/);
  });
});

describe('TokenVerifier with SUPABASE_JWKS_URL (asymmetric keys, a real local JWKS server)', () => {
  let server: Server;
  let jwksUrl: string;
  let fetches = 0;
  let rsa: { privateKey: CryptoKey; publicKey: CryptoKey };
  let ec: { privateKey: CryptoKey; publicKey: CryptoKey };
  const keys: JWK[] = [];

  const sign = (key: CryptoKey, alg: string, kid: string, claims: Record<string, unknown> = {}) =>
    new SignJWT({ role: 'authenticated', ...claims })
      .setProtectedHeader({ alg, kid, typ: 'JWT' })
      .setSubject(USER)
      .setAudience('authenticated')
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(key);

  beforeAll(async () => {
    rsa = await generateKeyPair('RS256', { extractable: true });
    ec = await generateKeyPair('ES256', { extractable: true });
    keys.push({ ...(await exportJWK(rsa.publicKey)), kid: 'rsa-1', alg: 'RS256', use: 'sig' });
    keys.push({ ...(await exportJWK(ec.publicKey)), kid: 'ec-1', alg: 'ES256', use: 'sig' });
    server = createServer((req, res) => {
      fetches++;
      if (req.url !== '/auth/v1/.well-known/jwks.json') return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    jwksUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}/auth/v1/.well-known/jwks.json`;
  });

  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('accepts RS256 and ES256 tokens signed by keys of the JWKS, fetching it once', async () => {
    const verifier = new TokenVerifier({ jwksUrl, audience: 'authenticated' });
    fetches = 0;
    expect(await verifier.verify(await sign(rsa.privateKey, 'RS256', 'rsa-1', { app_metadata: { tier: 'pro' } }))).toEqual({ id: USER, tier: 'pro', local: false });
    expect(await verifier.verify(await sign(ec.privateKey, 'ES256', 'ec-1'))).toEqual({ id: USER, tier: 'free', local: false });
    expect(fetches).toBe(1);
  });

  it('refuses a key the JWKS does not have, a wrong kid, an expired token, and HS256 when there is no secret', async () => {
    const verifier = new TokenVerifier({ jwksUrl, audience: 'authenticated' });
    const stranger = await generateKeyPair('RS256');
    await refused(verifier, await sign(stranger.privateKey, 'RS256', 'rsa-1'), /signature is not valid/);
    await refused(verifier, await sign(stranger.privateKey, 'RS256', 'unknown-kid'), /no key of SUPABASE_JWKS_URL matches/);
    const expired = await new SignJWT({ sub: USER, exp: now() - 10 }).setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' }).sign(rsa.privateKey);
    await refused(verifier, expired, /expired/);
    await refused(verifier, await hs256(), /algorithm "HS256" is not accepted/);
  });

  it('with a secret and a JWKS: HS256 is checked against the secret only (no key confusion with the public key)', async () => {
    const verifier = new TokenVerifier({ secret: SECRET, jwksUrl, audience: 'authenticated' });
    expect(await verifier.verify(await hs256())).toMatchObject({ id: USER });
    expect(await verifier.verify(await sign(rsa.privateKey, 'RS256', 'rsa-1'))).toMatchObject({ id: USER });
    // The classic attack: HMAC with the RSA public key (which is public) as the secret.
    const pem = await exportSPKI(rsa.publicKey);
    await refused(verifier, await hs256({}, pem), /signature is not valid/);
  });

  it('answers 503 (not 401) when the JWKS cannot be fetched', async () => {
    const down = new TokenVerifier({ jwksUrl: 'http://127.0.0.1:9/jwks.json', audience: 'authenticated', jwksTimeoutMs: 1000 });
    await refused(down, await sign(rsa.privateKey, 'RS256', 'rsa-1'), /could not be fetched/, 503);
    const notJwks = new TokenVerifier({ jwksUrl: jwksUrl.replace('jwks.json', 'missing.json'), audience: 'authenticated' });
    await refused(notJwks, await sign(rsa.privateKey, 'RS256', 'rsa-1'), /could not be fetched/, 503);
  });
});

describe('authSettingsOf', () => {
  // Production refuses the development MACHINE_TOKEN_SECRET before auth is looked at.
  const env = (vars: Record<string, string>) => loadConfig({ NODE_ENV: 'development', MACHINE_TOKEN_SECRET: 'a-machine-token-secret-for-tests', ...vars });

  it('is off (one local user) without a secret or JWKS outside production', () => {
    expect(authSettingsOf(env({}))).toEqual({ mode: 'off' });
    expect(authSettingsOf(env({ NODE_ENV: 'test' }))).toEqual({ mode: 'off' });
  });

  it('refuses production without either, naming SUPABASE_JWT_SECRET', () => {
    expect(() => authSettingsOf(env({ NODE_ENV: 'production' }))).toThrow(/^Invalid configuration: SUPABASE_JWT_SECRET is required when NODE_ENV=production/);
  });

  it('verifies JWTs with either or both', () => {
    expect(authSettingsOf(env({ NODE_ENV: 'production', SUPABASE_JWT_SECRET: SECRET }))).toEqual({
      mode: 'jwt', secret: SECRET, jwksUrl: undefined, audience: 'authenticated', issuer: undefined,
    });
    expect(authSettingsOf(env({ SUPABASE_JWKS_URL: 'https://ref.supabase.co/auth/v1/.well-known/jwks.json', SUPABASE_JWT_AUDIENCE: 'app' }))).toMatchObject({
      mode: 'jwt', jwksUrl: 'https://ref.supabase.co/auth/v1/.well-known/jwks.json', audience: 'app',
    });
  });

  it('refuses a short secret at start', () => {
    expect(() => env({ SUPABASE_JWT_SECRET: 'short' })).toThrow(/SUPABASE_JWT_SECRET must be at least 32 characters/);
  });
});
