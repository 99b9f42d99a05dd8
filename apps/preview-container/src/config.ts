import { existsSync, statSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { TEMPLATE_TYPES, projectFileSchema, type ProjectFile } from '@velocity/contracts';

/**
 * The container's configuration, read once from the environment at start.
 * Any problem is a ConfigError whose one-line message names the variable.
 */
export interface ContainerConfig {
  sessionId: string;
  projectId: string;
  /** Where the server listens, unless `listenSocket` is set (then port is 0). */
  port: number;
  host: string;
  /** A Unix socket to listen on instead of HOST:PORT: a sandboxed machine has no network to listen on. */
  listenSocket?: string;
  workDir: string;
  filesUrl: string;
  machineToken: string;
  templateType: (typeof TEMPLATE_TYPES)[number];
  /** The id in this machine's preview origin, `<routeId>.<preview domain>`: its session's id, or a pooled machine's own. */
  routeId: string;
  /** Port the browser's HMR websocket connects to (the public edge's), when it differs from the page's. */
  hmrClientPort?: number;
  /**
   * The dependency folder linked as `<WORK_DIR>/node_modules`: the project's own
   * installed dependencies (read-only, shared by machines; its Vite and plugins
   * then run, and nothing of the service's is served), or by default this
   * program's own node_modules, which holds the templates' dependencies.
   */
  nodeModulesDir: string;
  /**
   * Warm-pool machines only: the secret a provisioner must show to claim this
   * machine for a session. Until then it serves its template at `<ROUTE_ID>.<preview domain>`,
   * and `sessionId`, `projectId`, `filesUrl` and `machineToken` are placeholders.
   */
  claimToken?: string;
  /**
   * Warm-pool machines of a dependency profile only: the files it starts on in
   * place of its template's (the profile's package.json and config files).
   */
  startFiles?: ProjectFile[];
  /** Packages to pre-bundle at start, beside what Vite finds itself (bare specifiers). */
  optimizeDeps: string[];
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

const port = (min: number) =>
  z
    .string()
    .regex(/^\d+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(min, `must be ${min}-65535`).max(65535, `must be ${min}-65535`));

const absoluteDir = z
  .string()
  .min(1, 'must not be empty')
  .refine((p) => isAbsolute(p), 'must be an absolute path')
  .transform((p) => resolve(p));

const NIL_UUID = '00000000-0000-0000-0000-000000000000';

const schema = z.object({
  SESSION_ID: z.uuid('must be a UUID'),
  PROJECT_ID: z.uuid('must be a UUID'),
  /** Set for warm-pool machines, which learn their session when claimed. */
  POOL_CLAIM_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  PORT: port(0).optional(),
  HOST: z.string().min(1, 'must not be empty').default('127.0.0.1'),
  LISTEN_SOCKET: z
    .string()
    .refine((p) => isAbsolute(p), 'must be an absolute path')
    .optional(),
  WORK_DIR: absoluteDir,
  FILES_URL: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }),
  MACHINE_TOKEN: z.string().min(1, 'must not be empty'),
  TEMPLATE_TYPE: z.enum(TEMPLATE_TYPES, `must be one of: ${TEMPLATE_TYPES.join(', ')}`).default('react'),
  HMR_CLIENT_PORT: port(1).optional(),
  NODE_MODULES_DIR: absoluteDir
    .refine((p) => existsSync(p) && statSync(p).isDirectory(), 'must be an existing directory')
    .optional(),
  START_FILES: z
    .string()
    .transform((value, ctx) => {
      const parsed = z.array(projectFileSchema).safeParse(parseJson(Buffer.from(value, 'base64').toString('utf8')));
      if (parsed.success) return parsed.data;
      ctx.addIssue({ code: 'custom', message: 'must be base64 of a JSON array of project files' });
      return z.NEVER;
    })
    .optional(),
  OPTIMIZE_DEPS: z
    .string()
    .transform((value, ctx) => {
      const parsed = z.array(z.string().regex(/^(@[a-z0-9][\w.-]*\/)?[a-z0-9][\w.-]*(\/[\w@-][\w.@-]*)*$/i)).max(200).safeParse(parseJson(value));
      if (parsed.success) return parsed.data;
      ctx.addIssue({ code: 'custom', message: 'must be a JSON array of package specifiers' });
      return z.NEVER;
    })
    .optional(),
});

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The node_modules folder this program itself resolves react from. */
export function defaultNodeModulesDir(): string {
  // <root>/node_modules/react/package.json -> <root>/node_modules
  return dirname(dirname(require.resolve('react/package.json')));
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): ContainerConfig {
  // Treat empty strings as unset so `FOO= node main.ts` gets the default, not an odd error.
  const cleaned: Record<string, string | undefined> = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  if (cleaned.POOL_CLAIM_TOKEN) {
    // A pooled machine: its route id stands in for the session until a claim names one.
    if (!cleaned.ROUTE_ID) throw new ConfigError('Invalid environment: ROUTE_ID is required with POOL_CLAIM_TOKEN');
    cleaned.SESSION_ID = cleaned.ROUTE_ID;
    cleaned.PROJECT_ID ??= NIL_UUID;
    cleaned.FILES_URL ??= 'http://127.0.0.1/unclaimed';
    cleaned.MACHINE_TOKEN ??= 'unclaimed';
  }
  const parsed = schema.safeParse(cleaned);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const name = String(issue.path[0] ?? 'environment');
    const message = cleaned[name] === undefined ? 'is required' : issue.message;
    throw new ConfigError(`Invalid environment: ${name} ${message}`);
  }
  const e = parsed.data;
  if (e.PORT === undefined && !e.LISTEN_SOCKET) throw new ConfigError('Invalid environment: PORT is required (or LISTEN_SOCKET)');
  return {
    sessionId: e.SESSION_ID,
    projectId: e.PROJECT_ID,
    port: e.PORT ?? 0,
    host: e.HOST,
    listenSocket: e.LISTEN_SOCKET,
    workDir: e.WORK_DIR,
    filesUrl: e.FILES_URL,
    machineToken: e.MACHINE_TOKEN,
    templateType: e.TEMPLATE_TYPE,
    routeId: e.SESSION_ID.toLowerCase(),
    hmrClientPort: e.HMR_CLIENT_PORT,
    nodeModulesDir: e.NODE_MODULES_DIR ?? defaultNodeModulesDir(),
    claimToken: e.POOL_CLAIM_TOKEN,
    startFiles: e.POOL_CLAIM_TOKEN ? e.START_FILES : undefined,
    optimizeDeps: e.OPTIMIZE_DEPS ?? [],
  };
}
