import type { Config } from '@velocity/contracts';
import type { SessionStore } from './session-store';
import { PostgresSessionStore } from './postgres-session-store';

/** Composition roots pick the store here, by configuration; business logic never does. */
export function createSessionStore(config: Config): SessionStore {
  if (config.SESSION_STORE === 'supabase') {
    // Loaded only when chosen: supabase-js costs every process that never uses it ~50 ms at start.
    const { SupabaseSessionStore } = require('./supabase-session-store') as typeof import('./supabase-session-store');
    // loadConfig refuses SESSION_STORE=supabase without these two.
    return new SupabaseSessionStore({ url: config.SUPABASE_URL ?? '', serviceRoleKey: config.SUPABASE_SERVICE_ROLE_KEY ?? '', timeoutMs: config.DATABASE_TIMEOUT_MS });
  }
  return new PostgresSessionStore(config.DATABASE_URL, { max: config.DATABASE_POOL_MAX, min: config.DATABASE_POOL_MIN, timeoutMs: config.DATABASE_TIMEOUT_MS });
}
