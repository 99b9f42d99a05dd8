import { join } from 'node:path';
import { POOL_CLAIM_PATH, PermanentError, dependencyProfileOf, isCodeConfig, parseDependencyPool, type PoolClaim, type ProjectFile, type PoolKind, type PooledMachine } from '@velocity/contracts';
import { openHttp, readText } from '@velocity/runtime';
import { type Machine } from '@velocity/machines';
import { sessionAccess, sessionMachineEnv } from '../machine-env';
import { awayFromTurn, required, type ProvisionContext, type Step } from '../provision-context';

/**
 * The machine exists, has started, and is recorded on the row (status
 * `starting`) with the route id of its URL. A pre-started machine from the warm
 * pool is claimed when one fits (of the project's template, or, for a project
 * with dependencies of its own, of its dependency profile); otherwise one is
 * made for the session.
 */
export const createMachineStep: Step = {
  name: 'create-machine',
  timeoutMs: (config) => config.MACHINE_START_TIMEOUT_MS,
  async run(ctx, budgetMs) {
    const session = required(ctx.session, 'the session row');
    // Resumed after the machine was recorded: keep it.
    if (session.status !== 'creating' && session.containerId) {
      const recorded = await ctx.deps.provider.get(session.containerId);
      if (recorded) {
        ctx.machine = recorded;
        ctx.routeId = session.routeId ?? session.id;
        return;
      }
    }
    await refuseUncontainedCode(ctx);
    const pooled = await claimPooled(ctx);
    const { machine, routeId } = pooled ?? { machine: await coldMachine(ctx, budgetMs), routeId: session.id };
    const recorded = await ctx.deps.store.transition(session.id, 'starting', { containerId: machine.id, containerUrl: machine.url, routeId });
    if (!recorded) throw new PermanentError(`Session ${session.id} could not record its machine (status changed)`);
    ctx.session = recorded;
    ctx.machine = machine;
    ctx.routeId = routeId;
  },
};

/**
 * Machines that run without a sandbox (MACHINE_SANDBOX=auto on a host without
 * bubblewrap) would run a project's config files with the provider's rights:
 * such a project is refused, naming the file, unless the operator allowed it
 * (MACHINE_SANDBOX=none).
 */
async function refuseUncontainedCode(ctx: ProvisionContext): Promise<void> {
  if (ctx.deps.provider.isolation !== 'none' || ctx.deps.config.MACHINE_SANDBOX === 'none') return;
  const project = required(ctx.project, 'the project');
  const config = (await ctx.deps.store.listProjectFiles(project.id)).find(isCodeConfig);
  if (!config) return;
  throw new PermanentError(
    `${config.path} runs code in the preview machine, and machines here run without a sandbox (bubblewrap is not installed): ` +
      'install bubblewrap, or set MACHINE_SANDBOX=none to allow projects with config files',
  );
}

/**
 * A machine made for this session (the provider returns the same one if it
 * already exists). Booting is the machine's work, not ours: the session's turn
 * goes to others meanwhile.
 */
async function coldMachine(ctx: ProvisionContext, budgetMs: number): Promise<Machine> {
  const until = Date.now() + budgetMs;
  const { provider } = ctx.deps;
  const session = required(ctx.session, 'the session row');
  const project = required(ctx.project, 'the project');
  const spec = {
    sessionId: session.id,
    projectId: project.id,
    templateType: project.templateType,
    resourceLimits: session.resourceLimits,
    env: sessionMachineEnv(ctx.deps.config, provider, { sessionId: session.id, projectId: project.id, tier: session.tier, templateType: project.templateType }),
    ...(ctx.dependencies ? { dependencies: { key: ctx.dependencies.key, nodeModulesDir: join(ctx.dependencies.dir, 'node_modules') } } : {}),
  };
  return awayFromTurn(ctx, async () => {
    const created = await provider.create(spec, ctx.signal);
    ctx.logger.info('machine created', { machineId: created.id, provider: provider.name });
    return provider.waitStarted(created, Math.max(0, until - Date.now()), ctx.signal);
  });
}

/**
 * Claims a ready machine of the project's template and tier from the pool and
 * hands it the session's files; null when none fits (or the claim fails: that
 * machine is destroyed and the cold path runs).
 */
async function claimPooled(ctx: ProvisionContext): Promise<{ machine: Machine; routeId: string } | null> {
  const pool = ctx.deps.pool;
  if (!pool) return null;
  const session = required(ctx.session, 'the session row');
  const project = required(ctx.project, 'the project');
  // Projects with a set of their own are pooled only with DEPENDENCY_POOL.
  if (ctx.dependencies && parseDependencyPool(ctx.deps.config.DEPENDENCY_POOL).sets === 0) return null;
  // One read serves the claim and, for a project with a set of its own, its profile. Done alongside the
  // claim (wasted on a miss, which takes a second anyway). A failed read is no reason to lose the popped
  // machine: it is then claimed without files and fetches them itself.
  const read = readForClaim(ctx, project.id).catch((err: Error) => {
    ctx.logger.warn('could not read the files for the claim; the machine will fetch them', { err });
    return null;
  });
  const kind = await poolKindOf(ctx, read);
  if (!kind) return null;
  const started = Date.now();
  const [entry, files] = await Promise.all([pool.claim(kind), read]);
  if (!entry) return null;
  const snapshot = claimSnapshot(files);
  const access = sessionAccess(ctx.deps.config, ctx.deps.provider, { sessionId: session.id, projectId: project.id, tier: session.tier });
  try {
    // It waited at a low priority; it serves a session now (the machine cannot raise its own priority).
    const [, raised] = await Promise.all([
      sendClaim(entry, { sessionId: session.id, projectId: project.id, ...access, ...snapshot }, ctx.signal),
      ctx.deps.provider.restorePriority?.(entry.machineId).catch(() => false),
    ]);
    if (raised === false) ctx.logger.debug('pooled machine keeps its low priority (not allowed here)', { machineId: entry.machineId });
  } catch (err) {
    ctx.logger.warn('pooled machine refused the claim; starting one cold', { machineId: entry.machineId, err: err as Error });
    await ctx.deps.provider.destroy(entry.machineId).catch(() => undefined);
    return null;
  }
  ctx.deps.observer?.poolClaimed?.(project.templateType, Date.now() - started);
  ctx.logger.info('pooled machine claimed', { machineId: entry.machineId, routeId: entry.routeId, ms: Date.now() - started, filesSent: Boolean(snapshot.files) });
  return { machine: { id: entry.machineId, sessionId: entry.routeId, state: 'started', url: entry.url }, routeId: entry.routeId };
}

/**
 * The pool a session's machine may come from: its template's, or, with a
 * dependency set of its own, its dependency profile's, which is noted as used
 * (the pool keeps machines for recently used profiles); null when none is pooled.
 */
async function poolKindOf(ctx: ProvisionContext, read: Promise<FilesRead | null>): Promise<PoolKind | null> {
  const session = required(ctx.session, 'the session row');
  const project = required(ctx.project, 'the project');
  if (!ctx.dependencies) return { templateType: project.templateType, tier: session.tier };
  const files = (await read)?.files;
  if (!files) return null;
  const profile = dependencyProfileOf({
    templateType: project.templateType,
    tier: session.tier,
    dependencies: { key: ctx.dependencies.key, nodeModulesDir: join(ctx.dependencies.dir, 'node_modules') },
    files,
  });
  if (!profile) return null;
  await ctx.deps.pool?.profileUsed(profile);
  return { templateType: profile.templateType, tier: profile.tier, profile: profile.key };
}

/** Above this, the claim leaves the files out and the machine fetches them itself. */
const CLAIM_FILES_MAX_BYTES = 2 * 1024 * 1024;

type FilesSnapshot = Pick<PoolClaim, 'files' | 'filesCursor'>;

/** The project's files, and the file-changes cursor they are current to (when changes are followed). */
interface FilesRead {
  files: ProjectFile[];
  filesCursor?: string;
}

/**
 * The cursor is read first: a change made meanwhile comes again after it, and
 * the machine skips what it has.
 */
async function readForClaim(ctx: ProvisionContext, projectId: string): Promise<FilesRead> {
  const filesCursor = await ctx.deps.changes?.cursor(projectId);
  return { files: await ctx.deps.store.listProjectFiles(projectId), filesCursor };
}

/**
 * What the claim carries so the machine loads the files without a round trip
 * to the api and follows changes from the cursor (no second load): nothing
 * without a cursor, or above CLAIM_FILES_MAX_BYTES.
 */
function claimSnapshot(read: FilesRead | null): FilesSnapshot {
  if (!read?.filesCursor) return {};
  const bytes = read.files.reduce((sum, file) => sum + Buffer.byteLength(file.path) + Buffer.byteLength(file.content), 0);
  return bytes <= CLAIM_FILES_MAX_BYTES ? { files: read.files, filesCursor: read.filesCursor } : {};
}

async function sendClaim(entry: PooledMachine, claim: PoolClaim, signal: AbortSignal): Promise<void> {
  const res = await openHttp(`${entry.url}${POOL_CLAIM_PATH}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${entry.claimToken}` },
    body: JSON.stringify(claim),
    signal: AbortSignal.any([signal, AbortSignal.timeout(15_000)]),
  });
  const body = await readText(res);
  if (res.statusCode !== 200) throw new Error(`claim answered ${res.statusCode}: ${body.slice(0, 200)}`);
}
