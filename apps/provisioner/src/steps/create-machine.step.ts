import { PermanentError, TIER_LIMITS, apiInternalUrl, createMachineToken, publicUrl, type Config } from '@velocity/shared';
import { required, type ProvisionContext, type Step } from '../provision-context';

/** The machine exists, has started, and is recorded on the row (status `starting`). */
export const createMachineStep: Step = {
  name: 'create-machine',
  timeoutMs: (config) => config.MACHINE_START_TIMEOUT_MS,
  async run(ctx, budgetMs) {
    const until = Date.now() + budgetMs;
    const { provider, store } = ctx.deps;
    const session = required(ctx.session, 'the session row');
    const project = required(ctx.project, 'the project');
    const created = await provider.create(
      {
        sessionId: session.id,
        projectId: project.id,
        templateType: project.templateType,
        resourceLimits: session.resourceLimits,
        env: machineEnv(ctx, ctx.deps.config),
      },
      ctx.signal,
    );
    ctx.logger.info('machine created', { machineId: created.id, provider: provider.name });
    const machine = await provider.waitStarted(created, Math.max(0, until - Date.now()), ctx.signal);
    // Resumed after the machine was recorded: nothing to record again.
    if (session.status !== 'creating' && session.containerId === machine.id) {
      ctx.machine = machine;
      return;
    }
    const recorded = await store.transition(session.id, 'starting', { containerId: machine.id, containerUrl: machine.url });
    if (!recorded) throw new PermanentError(`Session ${session.id} could not record its machine (status changed)`);
    ctx.session = recorded;
    ctx.machine = machine;
  },
};

/** What the preview container needs: who it serves, where its files are, and how the browser reaches it. */
function machineEnv(ctx: ProvisionContext, config: Config): Record<string, string> {
  const { sessionId, projectId } = ctx.job;
  const publicBase = new URL(publicUrl(config));
  // Valid for as long as the session may be extended, plus a margin.
  const ttl = Math.max(config.SESSION_TTL_SECONDS, TIER_LIMITS[ctx.job.tier].maxDurationSeconds) + 3600;
  const token = createMachineToken({ sessionId, projectId }, config.MACHINE_TOKEN_SECRET, ttl);
  return {
    SESSION_ID: sessionId,
    PROJECT_ID: projectId,
    TEMPLATE_TYPE: required(ctx.project, 'the project').templateType,
    FILES_URL: `${apiInternalUrl(config)}/v1/machines/${sessionId}/files`,
    MACHINE_TOKEN: token,
    BASE_PATH: `/p/${sessionId}/`,
    HMR_CLIENT_PORT: publicBase.port || (publicBase.protocol === 'https:' ? '443' : '80'),
    LOG_LEVEL: config.LOG_LEVEL,
    ACTIVITY_REPORT_EVERY_MS: String(config.ACTIVITY_REPORT_EVERY_MS),
  };
}
