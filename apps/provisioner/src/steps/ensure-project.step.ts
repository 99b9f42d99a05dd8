import { DEPENDENCY_FILES, PermanentError, templateFiles } from '@velocity/contracts';
import { projectById } from '@velocity/session-store';
import type { Step } from '../provision-context';

/** The project exists (the demo project is made on first use) and has files (its template's, if none). */
export const ensureProjectStep: Step = {
  name: 'ensure-project',
  timeoutMs: (config) => config.PROVISION_DEADLINE_MS,
  async run(ctx) {
    const { store } = ctx.deps;
    const { projectId } = ctx.job;
    const project = await projectById(store, projectId);
    if (!project) throw new PermanentError(`Project ${projectId} does not exist`);
    // The files install-dependencies decides by, read here: a project that has them has files, so most
    // sessions need no second statement to know it (the seed itself is atomic either way).
    const dependencyFiles = await store.listProjectFiles(project.id, DEPENDENCY_FILES);
    if (dependencyFiles.length > 0 || (await store.hasProjectFiles(project.id))) {
      ctx.dependencyFiles = dependencyFiles;
    } else {
      const seeded = await store.seedProjectFiles(project.id, templateFiles(project.templateType));
      if (seeded > 0) ctx.logger.info('project seeded from template', { template: project.templateType, files: seeded });
    }
    ctx.project = project;
  },
};
