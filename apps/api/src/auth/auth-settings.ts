import { ConfigError, type Config } from '@velocity/contracts';

/** How the api authenticates users, decided once from the configuration. */
export type AuthSettings =
  | { mode: 'off' }
  | { mode: 'jwt'; secret?: string; jwksUrl?: string; audience: string; issuer?: string };

/**
 * `jwt` when SUPABASE_JWT_SECRET or SUPABASE_JWKS_URL is set; `off` (one local user)
 * otherwise, which NODE_ENV=production refuses with a ConfigError.
 */
export function authSettingsOf(config: Config): AuthSettings {
  const secret = config.SUPABASE_JWT_SECRET;
  const jwksUrl = config.SUPABASE_JWKS_URL;
  if (!secret && !jwksUrl) {
    if (config.NODE_ENV === 'production') {
      throw new ConfigError(
        'SUPABASE_JWT_SECRET',
        'is required when NODE_ENV=production (or SUPABASE_JWKS_URL): without either the api would have no auth (got null)',
      );
    }
    return { mode: 'off' };
  }
  return { mode: 'jwt', secret, jwksUrl, audience: config.SUPABASE_JWT_AUDIENCE, issuer: config.SUPABASE_JWT_ISSUER };
}
