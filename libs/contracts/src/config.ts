import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';

/**
 * Every setting of every app, read from the environment once at start.
 * A bad value stops the process with one line that names the variable.
 */
const duration = (fallback: number) => z.coerce.number().int().positive().default(fallback);

/** Where `npm run build` writes the preview container's main, from the repository's root. */
export const DEFAULT_PREVIEW_CONTAINER_ENTRY = 'dist/apps/preview-container/src/main.js';
/**
 * Node's flags for a preview machine (the Dockerfile's CMD says the same): a small young generation,
 * and an old one that starts at Vite's size, so its start runs fewer full collections (measured:
 * about 28 MB less resident after the first page load, and a little less CPU).
 */
export const PREVIEW_CONTAINER_NODE_FLAGS = ['--max-semi-space-size=2', '--initial-old-space-size=96'];
/** Vite's cache folder in a machine's work folder (its pre-bundled dependencies in `deps/`): the shared one is read-only. */
export const MACHINE_VITE_CACHE_DIR = '.vite-cache';

/** MACHINE_TOKEN_SECRET when none is set: published in this repo, so production refuses it. */
const DEVELOPMENT_MACHINE_TOKEN_SECRET = 'dev-only-machine-token-secret-change-me';

export const configSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info'),
  DATABASE_URL: z.string().url().default('postgres://postgres@127.0.0.1:5432/velocity_preview'),
  /** Connections to DATABASE_URL at most, per process. */
  DATABASE_POOL_MAX: z.coerce.number().int().min(1).max(200).default(10),
  /** Connections per process opened at start and kept open while idle (at most DATABASE_POOL_MAX): a burst then finds them open. */
  DATABASE_POOL_MIN: z.coerce.number().int().min(0).max(200).default(2),
  /**
   * Longest wait for a database connection, and for one statement's answer (or a Supabase request's). A database
   * that does not answer fails the call: the api answers 503 with Retry-After instead of holding the request.
   */
  DATABASE_TIMEOUT_MS: duration(3000),
  /** Which SessionStore adapter: `postgres` (direct SQL on DATABASE_URL) or `supabase` (PostgREST with the service-role key). */
  SESSION_STORE: z.enum(['postgres', 'supabase']).default('postgres'),
  /** The Supabase project's URL (https://<ref>.supabase.co); required when SESSION_STORE=supabase. */
  SUPABASE_URL: z.string().url().optional(),
  /** The Supabase service-role key (server side only, bypasses RLS); required when SESSION_STORE=supabase. */
  SUPABASE_SERVICE_ROLE_KEY: z.string().optional(),
  /** `npm start` without DATABASE_URL runs an embedded Postgres with its data here, on this port. */
  EMBEDDED_POSTGRES_DIR: z.string().default('.velocity/postgres'),
  EMBEDDED_POSTGRES_PORT: z.coerce.number().int().min(1).max(65535).default(54329),
  REDIS_URL: z.string().url().default('redis://127.0.0.1:6379'),
  /**
   * The api's Redis commands fail after this long without an answer, and at once while Redis is disconnected
   * (nothing is queued to run later): the request is answered 503 with Retry-After. Workers wait for Redis instead.
   */
  REDIS_COMMAND_TIMEOUT_MS: duration(1000),
  /** Prefix of every BullMQ queue and Redis key, so deployments and test runs never collide. */
  QUEUE_PREFIX: z.string().regex(/^[a-zA-Z0-9:_-]+$/).default('vp'),
  API_HOST: z.string().default('127.0.0.1'),
  API_PORT: z.coerce.number().int().min(1).max(65535).default(3000),
  /** Base URL of the api (and the preview page) as the browser sees it. */
  PUBLIC_URL: z.string().url().optional(),
  /**
   * Each preview is served at the root of an origin of its own: `<scheme>://<routeId>.<PREVIEW_DOMAIN>/`,
   * the scheme of PUBLIC_URL. Default: `localhost:<PUBLIC_URL's port>` (browsers resolve `*.localhost`
   * to loopback, no DNS set-up). On Fly.io: the preview app's wildcard host, e.g. `preview.example.com`.
   */
  PREVIEW_DOMAIN: z
    .string()
    .regex(/^(?=.{1,200}$)([a-z0-9]([a-z0-9-]*[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?$/, 'must be a lower-case host name with an optional :port, e.g. localhost:3000 or preview.example.com')
    .optional(),
  /** Base URL where preview machines reach the api for their files. Defaults to the api's own address. */
  API_INTERNAL_URL: z.string().url().optional(),
  /** `local`: one preview-container process per session; `fly`: Fly Machines (needs the FLY_* settings below). */
  MACHINE_PROVIDER: z.enum(['local', 'fly', 'noop']).default('local'),
  /** Fly Machines API base URL (inside Fly's network: http://_api.internal:4280/v1). */
  FLY_API_URL: z.string().url().default('https://api.machines.dev/v1'),
  /** Fly API token that may manage the machines of FLY_APP_NAME; required when MACHINE_PROVIDER=fly. */
  FLY_API_TOKEN: z.string().optional(),
  /** The Fly app that holds the preview machines; required when MACHINE_PROVIDER=fly. */
  FLY_APP_NAME: z.string().optional(),
  /** Image of apps/preview-container that Fly pulls; required when MACHINE_PROVIDER=fly. */
  FLY_IMAGE: z.string().optional(),
  /** Region of new preview machines; Fly picks one when unset. */
  FLY_REGION: z.string().optional(),
  /** Where the local provider keeps its machines' work folders and records. */
  LOCAL_MACHINES_DIR: z.string().default('.velocity/machines'),
  /** The preview container's built main that the local provider runs (`npm run build` writes it), relative to the repository's root. */
  PREVIEW_CONTAINER_ENTRY: z.string().regex(/\.js$/, 'must be the built JavaScript main (npm run build writes it), not a TypeScript source').default(DEFAULT_PREVIEW_CONTAINER_ENTRY),
  /**
   * How the local provider contains a machine: `auto` (bubblewrap when installed, else none, said
   * at start; projects that carry config files are then refused), `bubblewrap` (required: the
   * provider refuses to start without it), `none` (the operator allows unsandboxed machines).
   */
  MACHINE_SANDBOX: z.enum(['auto', 'bubblewrap', 'none']).default('auto'),
  /**
   * MACHINE_PROVIDER=local: the Unix socket on which the api also serves its machine routes
   * (`/v1/machines/*`, `/v1/routes/*`, nothing else), for sandboxed machines, which have no
   * network. Default: `<LOCAL_MACHINES_DIR>/api/api.sock`. Its folder is shown to every machine.
   */
  MACHINE_API_SOCKET: z.string().min(1).optional(),
  /** The unprivileged user and group id sandboxed machines run as, when the provider runs as root. */
  MACHINE_UID: z.coerce.number().int().min(1).max(4_294_967_294).default(65534),
  MACHINE_GID: z.coerce.number().int().min(1).max(4_294_967_294).default(65534),
  /** HMAC secret that signs the short-lived tokens machines use to fetch their files. */
  MACHINE_TOKEN_SECRET: z.string().min(16).default(DEVELOPMENT_MACHINE_TOKEN_SECRET),
  SESSION_TTL_SECONDS: duration(30 * 60),
  PROVISION_CONCURRENCY: duration(10),
  /** Sessions whose steps one provisioner runs at once; the others wait their turn, oldest first. 0: the CPU count. */
  PROVISION_TURNS: z.coerce.number().int().min(0).max(1000).default(0),
  /** How long a session's provisioning may take, plus INSTALL_TIMEOUT_MS (room for a dependency install): see provisioningLimitMs. */
  PROVISION_DEADLINE_MS: duration(60_000),
  /** How long installing a project's dependencies may take (a set installed before takes none). */
  INSTALL_TIMEOUT_MS: duration(180_000),
  /** Where installed dependency sets are kept, one folder per set (shared by every machine of this host). */
  DEPENDENCY_CACHE_DIR: z.string().min(1).default('.velocity/dependencies'),
  /** The npm registry projects' dependencies are installed from. */
  NPM_REGISTRY_URL: z.string().url().default('https://registry.npmjs.org/'),
  MACHINE_START_TIMEOUT_MS: duration(30_000),
  VERIFY_TIMEOUT_MS: duration(30_000),
  PROVISION_ATTEMPTS: duration(3),
  PROVISION_BACKOFF_MS: duration(500),
  /** How long a provisioner holds a job's lock; a worker that dies loses its jobs to others after about this long. */
  PROVISION_LOCK_MS: duration(10_000),
  /** How often workers look for jobs whose worker died. */
  PROVISION_STALLED_INTERVAL_MS: duration(5_000),
  /** How often a job may be taken over from a dead worker before it fails. */
  PROVISION_MAX_STALLED: duration(3),
  /** On SIGTERM, how long a worker lets its jobs finish before it hands them back to the queue. */
  SHUTDOWN_GRACE_MS: duration(10_000),
  /** Warm pool of pre-started machines: `react:2-4,vue/pro:0-2` (template[/tier]:min-max). Empty: no pool. */
  WARM_POOL: z.string().optional(),
  /**
   * Warm pool for projects with dependencies of their own: `<sets>x<machines>`, e.g. `4x1`,
   * machines kept ready for each of the most recently used dependency sets (with their config files). Empty: none.
   */
  DEPENDENCY_POOL: z.string().regex(/^\d+x\d+$/, 'must look like 4x1 (<sets>x<machines per set>)').optional(),
  /** A dependency set unused this long leaves the warm pool (its machines are destroyed). */
  DEPENDENCY_POOL_IDLE_MS: duration(30 * 60_000),
  /** How often the pool is topped up to its minimum. */
  POOL_REFILL_EVERY_MS: duration(2_000),
  /** The most machines (pooled and in use) the pool may bring the provider to. */
  MACHINE_BUDGET: duration(50),
  /**
   * Fault injection, for the fault suite and tests only (refused in production):
   * `fail-create=0.3,hang-create=0.2,step-delay=300`.
   */
  FAULTS: z.string().regex(/^([a-z-]+=[0-9.]+)(,[a-z-]+=[0-9.]+)*$/, 'must look like fail-create=0.3,step-delay=300').optional(),
  EVENT_STREAM_TTL_SECONDS: duration(24 * 3600),
  SSE_HEARTBEAT_MS: duration(15_000),
  /** How often the cleanup sweep runs (a BullMQ job scheduler): expired, idle and stuck sessions, lost jobs, orphaned machines. */
  CLEANUP_SWEEP_EVERY_MS: duration(30_000),
  /** Rows the sweep reads per query. */
  CLEANUP_BATCH_SIZE: z.coerce.number().int().positive().max(10_000).default(100),
  /** Idle limit for every tier, overriding TIER_LIMITS' idleSeconds (tests, special deployments). */
  IDLE_TIMEOUT_SECONDS: z.coerce.number().int().positive().optional(),
  /** How long a machine without a live session must have been seen before cleanup destroys it. */
  ORPHAN_GRACE_MS: duration(60_000),
  /** How often, at most, a preview machine reports its activity to the api (passed to machines in their environment). */
  ACTIVITY_REPORT_EVERY_MS: duration(30_000),
  /** Project file limits: files per project, bytes per file, bytes per project. */
  MAX_PROJECT_FILES: duration(500),
  MAX_FILE_BYTES: duration(1024 * 1024),
  MAX_PROJECT_BYTES: duration(20 * 1024 * 1024),
  /**
   * Operator credentials for Bull Board (/admin/queues) and /metrics: HTTP Basic with
   * OPERATOR_USER + OPERATOR_PASSWORD, and/or Bearer OPERATOR_TOKEN. With neither, those surfaces are off (404).
   */
  OPERATOR_USER: z.string().regex(/^[^:\s]{1,128}$/, 'must be 1-128 characters without ":" or spaces').optional(),
  OPERATOR_PASSWORD: z.string().min(12, 'must be at least 12 characters').max(1024).optional(),
  OPERATOR_TOKEN: z.string().regex(/^[A-Za-z0-9._~+/=-]{24,1024}$/, 'must be 24-1024 characters of A-Z a-z 0-9 . _ ~ + / = -').optional(),
  /** Where the workers' operator servers (/metrics, /health, /ready) listen; 0.0.0.0 in containers. */
  METRICS_HOST: z.string().default('127.0.0.1'),
  /** Port of the provisioner's operator server; 0 turns it off. */
  PROVISIONER_METRICS_PORT: z.coerce.number().int().min(0).max(65535).default(9101),
  /** Port of the cleanup worker's operator server; 0 turns it off. */
  CLEANUP_METRICS_PORT: z.coerce.number().int().min(0).max(65535).default(9102),
  /** How long each readiness check (Redis, Postgres) of /ready may take before it counts as failing. */
  READY_TIMEOUT_MS: duration(2000),
  /**
   * API auth: Supabase-issued JWTs, HS256 with the project's JWT secret and/or
   * asymmetric keys from its JWKS URL (https://<ref>.supabase.co/auth/v1/.well-known/jwks.json).
   * With neither, outside production, auth is off and every request is one local user.
   */
  SUPABASE_JWT_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  SUPABASE_JWKS_URL: z.string().url().optional(),
  /** The `aud` a token must carry when it has one. */
  SUPABASE_JWT_AUDIENCE: z.string().min(1).default('authenticated'),
  /** The `iss` a token must carry, when set (https://<ref>.supabase.co/auth/v1). */
  SUPABASE_JWT_ISSUER: z.string().min(1).optional(),
  /** Live (queued, creating, starting, active) sessions a user of each tier may have at once. */
  QUOTA_FREE_CONCURRENT: duration(2),
  QUOTA_PRO_CONCURRENT: duration(10),
  /** POST /v1/sessions per user per minute (a fixed window in Redis). */
  RATE_LIMIT_SESSIONS_PER_MINUTE: duration(30),
  /** Projects a user of each tier may own (counted and inserted under a per-owner lock in the database). */
  QUOTA_FREE_PROJECTS: duration(20),
  QUOTA_PRO_PROJECTS: duration(200),
  /** Live session event streams (SSE) a user of each tier may hold open at once, across api replicas (leases in Redis). */
  QUOTA_FREE_STREAMS: duration(20),
  QUOTA_PRO_STREAMS: duration(100),
  /** How long the local edge remembers a preview route id it found unknown (or ended): repeats of it cost no query. */
  EDGE_UNKNOWN_ROUTE_CACHE_SECONDS: z.coerce.number().int().min(0).max(60).default(2),
  /** Route lookups that find nothing, per client address (an IPv6 client's /64) per minute, at the local edge; beyond it: 429 without a query. */
  EDGE_MISSES_PER_MINUTE: duration(120),
});

export type Config = z.infer<typeof configSchema>;

/**
 * Reads `.env` in the working folder into process.env, when there is one (Node's
 * own parser); a variable already in the environment keeps its value. Entry
 * points call it once, before loadConfig: the services, `npm start` and the CLI.
 */
export function loadDotEnv(dir = process.cwd()): string | null {
  const file = join(dir, '.env');
  if (!existsSync(file)) return null;
  process.loadEnvFile(file);
  return file;
}

export class ConfigError extends Error {
  constructor(readonly variable: string, detail: string) {
    super(`Invalid configuration: ${variable} ${detail}`);
    this.name = 'ConfigError';
  }
}

/** Parses the environment; throws a ConfigError naming the first bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== ''));
  const parsed = configSchema.safeParse(cleaned);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const variable = String(issue.path[0] ?? 'environment');
    // Operator secrets are never echoed: the error line ends up in logs.
    const got = (variable === 'OPERATOR_PASSWORD' || variable === 'OPERATOR_TOKEN') && env[variable] ? '(hidden)' : JSON.stringify(env[variable] ?? null);
    throw new ConfigError(variable, `${issue.message} (got ${got})`);
  }
  requireFlySettings(parsed.data);
  requireSupabaseSettings(parsed.data);
  requireOperatorPair(parsed.data);
  if (parsed.data.MACHINE_PROVIDER === 'noop' && parsed.data.NODE_ENV === 'production') throw new ConfigError('MACHINE_PROVIDER', 'must not be noop (benchmarks only) when NODE_ENV=production');
  // Anyone who knows the default could sign machine tokens and read every project's files.
  if (parsed.data.MACHINE_TOKEN_SECRET === DEVELOPMENT_MACHINE_TOKEN_SECRET && parsed.data.NODE_ENV === 'production') {
    throw new ConfigError('MACHINE_TOKEN_SECRET', 'must be set to a secret of its own when NODE_ENV=production (got the development default)');
  }
  return parsed.data;
}

/** MACHINE_PROVIDER=fly: previews are on the preview app's own hosts (the default domain names the api). */
function requireFlySettings(config: Config): void {
  if (config.MACHINE_PROVIDER === 'fly' && !config.PREVIEW_DOMAIN) throw new ConfigError('PREVIEW_DOMAIN', 'is required when MACHINE_PROVIDER=fly (got null)');
}

/**
 * What a process that manages Fly machines (provisioner, cleanup) cannot work
 * without; asked for when it makes its provider, so the api, which never calls
 * the Machines API, holds no Fly token.
 */
export function flyMachinesSettings(config: Config): { token: string; appName: string; image: string } {
  for (const variable of ['FLY_API_TOKEN', 'FLY_APP_NAME', 'FLY_IMAGE'] as const) {
    if (!config[variable]) throw new ConfigError(variable, 'is required when MACHINE_PROVIDER=fly (got null)');
  }
  return { token: config.FLY_API_TOKEN!, appName: config.FLY_APP_NAME!, image: config.FLY_IMAGE! };
}

/** Basic credentials come in pairs: a user without a password (or the reverse) is a mistake, not "off". */
function requireOperatorPair(config: Config): void {
  if (config.OPERATOR_USER && !config.OPERATOR_PASSWORD) throw new ConfigError('OPERATOR_PASSWORD', 'is required when OPERATOR_USER is set (got null)');
  if (config.OPERATOR_PASSWORD && !config.OPERATOR_USER) throw new ConfigError('OPERATOR_USER', 'is required when OPERATOR_PASSWORD is set (got null)');
}

/** SESSION_STORE=supabase cannot work without the project's URL and its service-role key. */
function requireSupabaseSettings(config: Config): void {
  if (config.SESSION_STORE !== 'supabase') return;
  for (const variable of ['SUPABASE_URL', 'SUPABASE_SERVICE_ROLE_KEY'] as const) {
    if (!config[variable]) throw new ConfigError(variable, 'is required when SESSION_STORE=supabase (got null)');
  }
}

/** The api's base URL as browsers see it. */
/** The longest a session may rightly be provisioning: the deadline plus a dependency install's own limit. */
export function provisioningLimitMs(config: Pick<Config, 'PROVISION_DEADLINE_MS' | 'INSTALL_TIMEOUT_MS'>): number {
  return config.PROVISION_DEADLINE_MS + config.INSTALL_TIMEOUT_MS;
}

export function publicUrl(config: Config): string {
  return (config.PUBLIC_URL ?? `http://${config.API_HOST}:${config.API_PORT}`).replace(/\/$/, '');
}

/** The api's Unix socket for local machines (MACHINE_API_SOCKET), as an absolute path. */
export function machineApiSocketOf(config: Pick<Config, 'MACHINE_API_SOCKET' | 'LOCAL_MACHINES_DIR'>): string {
  return resolve(config.MACHINE_API_SOCKET ?? join(config.LOCAL_MACHINES_DIR, 'api', 'api.sock'));
}

/** The api's base URL as machines see it. */
export function apiInternalUrl(config: Config): string {
  return (config.API_INTERNAL_URL ?? `http://${config.API_HOST}:${config.API_PORT}`).replace(/\/$/, '');
}
