/**
 * Preview machines hold no credentials of the services (issue 6): a local machine
 * inherits its provisioner's environment minus these, then gets its own (session
 * id, files URL, its short-lived MACHINE_TOKEN). On Fly a machine gets only its own.
 */
const SECRET_NAME = /DATABASE_URL|REDIS_URL|_PG_URL|SECRET|PASSWORD|SERVICE_ROLE|PRIVATE_KEY|API_KEY|_TOKEN$|^OPERATOR_|^SUPABASE_/i;
/** libpq's own variables (PGPASSWORD, PGUSER, PGHOST…). */
const LIBPQ = /^PG[A-Z]+$/;

/** `env` without database and Redis URLs, signing secrets, service keys, tokens and passwords. */
export function withoutSecrets(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(
    Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined && !SECRET_NAME.test(entry[0]) && !LIBPQ.test(entry[0])),
  );
}
