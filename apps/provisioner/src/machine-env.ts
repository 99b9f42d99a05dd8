import { TIER_LIMITS, apiInternalUrl, createMachineToken, createRoutesToken, previewOriginOf, type Config, type Tier } from '@velocity/contracts';
import { type MachineProvider } from '@velocity/machines';

/** How the browser reaches machines: the port of the preview's origin, which its HMR websocket connects to. */
function hmrClientPort(config: Config): string {
  const origin = new URL(previewOriginOf(config, '00000000-0000-0000-0000-000000000000'));
  return origin.port || (origin.protocol === 'https:' ? '443' : '80');
}

/** The api's base URL as `provider`'s machines reach it: the provider's own way (a sandbox's socket), else API_INTERNAL_URL. */
export function machineApiBase(config: Config, provider: Pick<MachineProvider, 'machineApiUrl'>): string {
  return provider.machineApiUrl ?? apiInternalUrl(config);
}

/**
 * Where a session's machine reads its files (at the api as `provider`'s
 * machines reach it), and the token that opens them (valid as long as the tier
 * lets a session live).
 */
export function sessionAccess(config: Config, provider: Pick<MachineProvider, 'machineApiUrl'>, session: { sessionId: string; projectId: string; tier: Tier }) {
  const ttl = Math.max(config.SESSION_TTL_SECONDS, TIER_LIMITS[session.tier].maxDurationSeconds) + 3600;
  return {
    filesUrl: `${machineApiBase(config, provider)}/v1/machines/${session.sessionId}/files`,
    machineToken: createMachineToken({ sessionId: session.sessionId, projectId: session.projectId }, config.MACHINE_TOKEN_SECRET, ttl),
  };
}

/** The environment of a machine `provider` makes for one session. */
export function sessionMachineEnv(
  config: Config,
  provider: Pick<MachineProvider, 'machineApiUrl'>,
  session: { sessionId: string; projectId: string; tier: Tier; templateType: string },
) {
  const access = sessionAccess(config, provider, session);
  return {
    SESSION_ID: session.sessionId,
    PROJECT_ID: session.projectId,
    TEMPLATE_TYPE: session.templateType,
    FILES_URL: access.filesUrl,
    MACHINE_TOKEN: access.machineToken,
    ...commonEnv(config, provider, session.sessionId),
  };
}

/** The environment of a warm-pool machine: its template, the route id of its preview origin, and the secret that claims it. */
export function pooledMachineEnv(config: Config, provider: Pick<MachineProvider, 'machineApiUrl'>, machine: { routeId: string; templateType: string; claimToken: string }) {
  return {
    ROUTE_ID: machine.routeId,
    POOL_CLAIM_TOKEN: machine.claimToken,
    TEMPLATE_TYPE: machine.templateType,
    ...commonEnv(config, provider, machine.routeId),
  };
}

/**
 * How long a machine's routes token lasts: longer than any machine lives (a
 * pooled one waits until claimed, then serves its session's longest tier).
 */
const ROUTES_TOKEN_TTL_SECONDS = 7 * 24 * 3600;

function commonEnv(config: Config, provider: Pick<MachineProvider, 'machineApiUrl'>, routeId: string) {
  return {
    // Where and with what a machine on Fly.io asks which machine serves another route id (its fly-replay answers).
    ROUTES_URL: `${machineApiBase(config, provider)}/v1/routes`,
    ROUTES_TOKEN: createRoutesToken(routeId, config.MACHINE_TOKEN_SECRET, ROUTES_TOKEN_TTL_SECONDS),
    HMR_CLIENT_PORT: hmrClientPort(config),
    LOG_LEVEL: config.LOG_LEVEL,
    ACTIVITY_REPORT_EVERY_MS: String(config.ACTIVITY_REPORT_EVERY_MS),
  };
}
