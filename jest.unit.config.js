// The fast tier (`npm run test:unit`): every spec that starts no process, in under a minute.
// A spec that starts one (the api or another app, a preview machine, Vite, Verdaccio, Chromium)
// is named `*.int.spec.ts`, and every spec of apps/e2e does; `npm test` runs them all.
const path = require('node:path');
const suite = require('./jest.config.js');

const INTEGRATION_SPECS = '\\.int\\.spec\\.ts$';

const projectConfig = (project) => require(project.replace('<rootDir>', __dirname));

module.exports = {
  ...suite,
  projects: suite.projects
    .map(projectConfig)
    .filter((project) => project.rootDir !== path.join(__dirname, 'apps/e2e'))
    .map((project) => ({ ...project, testPathIgnorePatterns: ['/node_modules/', INTEGRATION_SPECS] })),
};
