import { TIER_LIMITS, apiInternalUrl, createMachineToken, previewPathOf, publicUrl, type Config, type Tier } from '@velocity/shared';

/** How the browser reaches machines: the port its HMR websocket connects to. */
function hmrClientPort(config: Config): string {
  const base = new URL(publicUrl(config));
  return base.port || (base.protocol === 'https:' ? '443' : '80');
}

/** Where a session's machine reads its files, and the token that opens them (valid as long as the tier lets a session live). */
export function sessionAccess(config: Config, session: { sessionId: string; projectId: string; tier: Tier }) {
  const ttl = Math.max(config.SESSION_TTL_SECONDS, TIER_LIMITS[session.tier].maxDurationSeconds) + 3600;
  return {
    filesUrl: `${apiInternalUrl(config)}/v1/machines/${session.sessionId}/files`,
    machineToken: createMachineToken({ sessionId: session.sessionId, projectId: session.projectId }, config.MACHINE_TOKEN_SECRET, ttl),
  };
}

/** The environment of a machine made for one session. */
export function sessionMachineEnv(config: Config, session: { sessionId: string; projectId: string; tier: Tier; templateType: string }) {
  const access = sessionAccess(config, session);
  return {
    SESSION_ID: session.sessionId,
    PROJECT_ID: session.projectId,
    TEMPLATE_TYPE: session.templateType,
    FILES_URL: access.filesUrl,
    MACHINE_TOKEN: access.machineToken,
    BASE_PATH: previewPathOf(session.sessionId),
    ...commonEnv(config),
  };
}

/** The environment of a warm-pool machine: its template and route id, and the secret that claims it. */
export function pooledMachineEnv(config: Config, machine: { routeId: string; templateType: string; claimToken: string }) {
  return {
    ROUTE_ID: machine.routeId,
    POOL_CLAIM_TOKEN: machine.claimToken,
    TEMPLATE_TYPE: machine.templateType,
    BASE_PATH: previewPathOf(machine.routeId),
    ...commonEnv(config),
  };
}

function commonEnv(config: Config) {
  return {
    HMR_CLIENT_PORT: hmrClientPort(config),
    LOG_LEVEL: config.LOG_LEVEL,
    ACTIVITY_REPORT_EVERY_MS: String(config.ACTIVITY_REPORT_EVERY_MS),
  };
}
