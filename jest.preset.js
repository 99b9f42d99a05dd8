// One Jest setup for every project: SWC transpiles TypeScript (with decorator
// metadata for NestJS), tests run in band because they share real services.
const path = require('node:path');

module.exports = (projectDir) => ({
  displayName: path.basename(projectDir),
  rootDir: projectDir,
  testEnvironment: 'node',
  testMatch: ['<rootDir>/src/**/*.spec.ts', '<rootDir>/test/**/*.spec.ts'],
  transform: {
    '^.+\\.ts$': [
      '@swc/jest',
      {
        jsc: {
          parser: { syntax: 'typescript', decorators: true },
          transform: { legacyDecorator: true, decoratorMetadata: true },
          target: 'es2022',
        },
        module: { type: 'commonjs' },
      },
    ],
    // jose ships ES modules only: compiled to CommonJS for Jest.
    '/node_modules/jose/.+\\.js$': ['@swc/jest', { jsc: { target: 'es2022' }, module: { type: 'commonjs' } }],
  },
  transformIgnorePatterns: ['/node_modules/(?!jose/)'],
  moduleNameMapper: { '^@velocity/([a-z-]+)$': path.join(__dirname, 'libs/$1/src/index.ts') },
  // `fetch` in tests resolves `*.localhost` (preview origins) to loopback, as browsers do.
  setupFiles: [path.join(__dirname, 'libs/testing/src/setup-localhost-fetch.ts')],
  globalSetup: path.join(__dirname, 'libs/testing/src/global-setup.js'),
  globalTeardown: path.join(__dirname, 'libs/testing/src/global-teardown.js'),
  testTimeout: 60_000,
});
