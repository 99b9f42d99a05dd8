// The whole suite: every app and lib, one run (`npm test`).
module.exports = {
  projects: ['libs/shared', 'apps/api', 'apps/provisioner', 'apps/cleanup', 'apps/preview-container', 'apps/e2e'].map(
    (dir) => `<rootDir>/${dir}/jest.config.js`,
  ),
};
