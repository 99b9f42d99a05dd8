// The whole suite: every app and lib, one run (`npm test`).
const { availableParallelism } = require('node:os');

module.exports = {
  // Two at least: Jest's default (one less than the cores) runs one file at a time on two cores, and most spec files
  // wait on processes they started more than they compute. At most four: each e2e file runs a whole system.
  maxWorkers: Math.min(4, Math.max(2, availableParallelism())),
  // Global in a multi-project run (a project's own testTimeout is not used there).
  testTimeout: 60_000,
  // After Jest's summary: the ten spec files that took longest.
  reporters: ['default', '<rootDir>/libs/testing/src/slowest-files-reporter.js'],
  projects: ['libs/contracts', 'libs/runtime', 'libs/ops', 'libs/session-store', 'libs/machines', 'libs/testing', 'apps/api', 'apps/provisioner', 'apps/cleanup', 'apps/preview-container', 'apps/e2e'].map(
    (dir) => `<rootDir>/${dir}/jest.config.js`,
  ),
};
