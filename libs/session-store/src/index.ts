// The SessionStore port and its adapters (Postgres, Supabase).
export * from './create-session-store';
export * from './postgres-session-store';
export * from './session-rows';
export * from './session-store';
