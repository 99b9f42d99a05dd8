import { PermanentError, templateFiles } from '@velocity/contracts';
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
    // Most projects have files: check before sending the template (the seed itself is atomic either way).
    if (!(await store.hasProjectFiles(project.id))) {
      const seeded = await store.seedProjectFiles(project.id, templateFiles(project.templateType));
      if (seeded > 0) ctx.logger.info('project seeded from template', { template: project.templateType, files: seeded });
    }
    ctx.project = project;
  },
};
