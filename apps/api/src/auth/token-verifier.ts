import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { isUuid, tierSchema, type Tier } from '@velocity/contracts';
import type { AuthUser } from './auth-user';

/** Why a token was refused: 401, or 503 when the signing keys could not be fetched. */
export class TokenError extends Error {
  constructor(
    message: string,
    readonly status: 401 | 503 = 401,
  ) {
    super(message);
    this.name = 'TokenError';
  }
}

export interface TokenVerifierOptions {
  /** SUPABASE_JWT_SECRET: verifies HS256 tokens (the secret's text, as Supabase uses it). */
  secret?: string;
  /** SUPABASE_JWKS_URL: verifies asymmetric tokens (RS256, ES256, EdDSA) with the keys it serves. */
  jwksUrl?: string;
  /** Required `aud` when the token has one (SUPABASE_JWT_AUDIENCE, `authenticated`). */
  audience: string;
  /** Required `iss`, when set. */
  issuer?: string;
  /** How long a JWKS fetch may take. */
  jwksTimeoutMs?: number;
}

/** Asymmetric algorithms Supabase signs with (and EdDSA); never HS* against JWKS keys. */
const ASYMMETRIC_ALGS = ['RS256', 'ES256', 'EdDSA'];
/** Longer than any Supabase access token; bounds the work spent on garbage. */
const MAX_TOKEN_LENGTH = 8192;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/** Error codes of jose that mean "this token is not acceptable" rather than "the keys could not be had". */
const TOKEN_ERRORS: Record<string, string> = {
  ERR_JWT_EXPIRED: 'the token has expired',
  ERR_JWS_SIGNATURE_VERIFICATION_FAILED: "the token's signature is not valid",
  ERR_JOSE_ALG_NOT_ALLOWED: "the token's algorithm is not accepted",
  ERR_JOSE_NOT_SUPPORTED: "the token's algorithm or key is not supported",
  ERR_JWS_INVALID: 'the token is not a valid JWS',
  ERR_JWT_INVALID: 'the token is not a valid JWT',
  ERR_JWKS_NO_MATCHING_KEY: 'no key of SUPABASE_JWKS_URL matches the token (kid)',
  ERR_JWKS_MULTIPLE_MATCHING_KEYS: 'more than one key of SUPABASE_JWKS_URL matches the token',
  ERR_JWK_INVALID: "the token's key is not valid",
};

/**
 * Verifies Supabase access tokens and says who they are for. The algorithm in
 * the token's header picks the key: HS256 → SUPABASE_JWT_SECRET, RS256/ES256/EdDSA
 * → SUPABASE_JWKS_URL; anything else (`none`, HS512, HS256 with only a JWKS…) is
 * refused before any key is used. `sub` (a uuid) and `exp` are required, `nbf` and
 * `iat` are honoured by jose, `aud` must be the audience when present, `role`
 * must be `authenticated` when present (the anon and service keys are not users).
 */
export class TokenVerifier {
  private readonly secretKey?: Uint8Array;
  private readonly jwks?: JWTVerifyGetKey;

  constructor(private readonly options: TokenVerifierOptions) {
    if (!options.secret && !options.jwksUrl) throw new Error('TokenVerifier needs a secret or a JWKS URL');
    if (options.secret) this.secretKey = new TextEncoder().encode(options.secret);
    if (options.jwksUrl) {
      this.jwks = createRemoteJWKSet(new URL(options.jwksUrl), {
        timeoutDuration: options.jwksTimeoutMs ?? 5000,
        // A token with an unknown kid makes jose fetch again, at most this often.
        cooldownDuration: 30_000,
        cacheMaxAge: 10 * 60_000,
      });
    }
  }

  async verify(token: string): Promise<AuthUser> {
    if (token.length > MAX_TOKEN_LENGTH) throw new TokenError(`the token is longer than ${MAX_TOKEN_LENGTH} characters`);
    if (!COMPACT_JWS.test(token)) throw new TokenError('the token is not a signed JWT (header.payload.signature)');
    let alg: unknown;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch {
      throw new TokenError("the token's header is not valid");
    }
    const payload = await this.verifySignature(token, typeof alg === 'string' ? alg : String(alg));
    return this.userOf(payload);
  }

  private async verifySignature(token: string, alg: string): Promise<JWTPayload> {
    const claims = { requiredClaims: ['sub', 'exp'], issuer: this.options.issuer };
    try {
      if (alg === 'HS256' && this.secretKey) {
        return (await jwtVerify(token, this.secretKey, { ...claims, algorithms: ['HS256'] })).payload;
      }
      if (ASYMMETRIC_ALGS.includes(alg) && this.jwks) {
        return (await jwtVerify(token, this.jwks, { ...claims, algorithms: ASYMMETRIC_ALGS })).payload;
      }
    } catch (err) {
      throw this.tokenErrorOf(err, alg !== 'HS256');
    }
    throw new TokenError(`the token's algorithm ${JSON.stringify(alg).slice(0, 40)} is not accepted`);
  }

  private tokenErrorOf(err: unknown, usingJwks: boolean): TokenError {
    const { code, claim } = (err ?? {}) as { code?: string; claim?: string };
    if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED') return new TokenError(`the token's "${claim ?? 'claims'}" claim is missing or not valid`);
    if (code && TOKEN_ERRORS[code]) return new TokenError(TOKEN_ERRORS[code]);
    // With a JWKS, anything else happened while getting the keys (timeout, network, not a JWKS): not the client's fault.
    if (usingJwks) return new TokenError('the signing keys (SUPABASE_JWKS_URL) could not be fetched; try again', 503);
    return new TokenError('the token is not valid');
  }

  private userOf(payload: JWTPayload): AuthUser {
    const { sub, aud, role } = payload as JWTPayload & { role?: unknown };
    if (typeof sub !== 'string' || !isUuid(sub)) throw new TokenError('the token\'s "sub" claim is not a user id (uuid)');
    if (aud !== undefined) {
      const audiences = Array.isArray(aud) ? aud : [aud];
      if (!audiences.includes(this.options.audience)) throw new TokenError(`the token's "aud" claim is not ${JSON.stringify(this.options.audience)}`);
    }
    if (role !== undefined && role !== 'authenticated') throw new TokenError('the token\'s "role" claim is not "authenticated"');
    return { id: sub.toLowerCase(), tier: tierOf(payload), local: false };
  }
}

/**
 * The user's tier: `app_metadata.tier` (in Supabase only the service role can set
 * app_metadata; user_metadata is the user's own and is never read), `free` otherwise.
 */
export function tierOf(payload: JWTPayload): Tier {
  const appMetadata = payload.app_metadata;
  const claimed = appMetadata && typeof appMetadata === 'object' ? (appMetadata as { tier?: unknown }).tier : undefined;
  const parsed = tierSchema.safeParse(claimed);
  return parsed.success ? parsed.data : 'free';
}
