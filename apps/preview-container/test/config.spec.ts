import { ConfigError, defaultNodeModulesDir, loadConfig } from '../src/config';

const valid = {
  SESSION_ID: '6f1c1a39-3c2e-4b8a-9a55-1b2f6a1f0e7d',
  PROJECT_ID: '0b7e2a43-7bb3-4d0a-8f44-7d7d3a1a9f00',
  PORT: '4100',
  WORK_DIR: '/tmp/pc-work',
  FILES_URL: 'http://127.0.0.1:3000/internal/sessions/x/files',
  MACHINE_TOKEN: 'token',
};

describe('loadConfig', () => {
  it('applies the defaults', () => {
    expect(loadConfig(valid)).toEqual({
      sessionId: valid.SESSION_ID,
      projectId: valid.PROJECT_ID,
      port: 4100,
      host: '127.0.0.1',
      workDir: '/tmp/pc-work',
      filesUrl: valid.FILES_URL,
      machineToken: 'token',
      templateType: 'react',
      routeId: valid.SESSION_ID,
      hmrClientPort: undefined,
      nodeModulesDir: defaultNodeModulesDir(),
      startFiles: undefined,
      optimizeDeps: [],
    });
    expect(defaultNodeModulesDir()).toMatch(/node_modules$/);
  });

  it('reads the optional variables', () => {
    const config = loadConfig({ ...valid, HOST: '0.0.0.0', HMR_CLIENT_PORT: '8080', NODE_MODULES_DIR: defaultNodeModulesDir() });
    expect(config).toMatchObject({ host: '0.0.0.0', hmrClientPort: 8080 });
  });

  it("reads a dependency profile's start files (pooled machines only) and the packages to pre-bundle", () => {
    const files = [{ path: 'vite.config.ts', content: 'export default {}' }];
    const pooled = { ...valid, POOL_CLAIM_TOKEN: 'c'.repeat(32), ROUTE_ID: valid.SESSION_ID };
    const env = { START_FILES: Buffer.from(JSON.stringify(files)).toString('base64'), OPTIMIZE_DEPS: '["react-dom/client","@scope/pkg"]' };
    expect(loadConfig({ ...pooled, ...env })).toMatchObject({ startFiles: files, optimizeDeps: ['react-dom/client', '@scope/pkg'] });
    expect(loadConfig({ ...valid, ...env }).startFiles).toBeUndefined();
    expect(() => loadConfig({ ...pooled, START_FILES: 'not base64 json' })).toThrow('Invalid environment: START_FILES must be base64 of a JSON array of project files');
    expect(() => loadConfig({ ...valid, OPTIMIZE_DEPS: '["../escape"]' })).toThrow('Invalid environment: OPTIMIZE_DEPS must be a JSON array of package specifiers');
  });

  it('listens on LISTEN_SOCKET instead of a port (a sandboxed machine has no network), and needs one of them', () => {
    const { PORT: _port, ...withoutPort } = valid;
    expect(loadConfig({ ...withoutPort, LISTEN_SOCKET: '/run/machine/http.sock' })).toMatchObject({ listenSocket: '/run/machine/http.sock', port: 0 });
    expect(() => loadConfig(withoutPort)).toThrow('Invalid environment: PORT is required (or LISTEN_SOCKET)');
    expect(() => loadConfig({ ...valid, LISTEN_SOCKET: 'http.sock' })).toThrow('Invalid environment: LISTEN_SOCKET must be an absolute path');
    expect(loadConfig({ ...withoutPort, LISTEN_SOCKET: '/s.sock', FILES_URL: 'http://unix:/run/vp-api/api.sock:/v1/machines/x/files' }).filesUrl).toBe(
      'http://unix:/run/vp-api/api.sock:/v1/machines/x/files',
    );
  });

  it("takes a pooled machine's route id as its id until a claim names the session", () => {
    const routeId = '3d2c1b0a-0000-4000-8000-00000000abcd';
    const config = loadConfig({ PORT: '0', WORK_DIR: '/tmp/pc-work', POOL_CLAIM_TOKEN: 'c'.repeat(32), ROUTE_ID: routeId });
    expect(config).toMatchObject({ routeId, sessionId: routeId, claimToken: 'c'.repeat(32) });
  });

  it.each([
    [{ SESSION_ID: undefined }, 'SESSION_ID is required'],
    [{ SESSION_ID: 'nope' }, 'SESSION_ID must be a UUID'],
    [{ PROJECT_ID: '' }, 'PROJECT_ID is required'],
    [{ PORT: '80a' }, 'PORT must be a whole number'],
    [{ PORT: '70000' }, 'PORT must be 0-65535'],
    [{ WORK_DIR: 'relative/dir' }, 'WORK_DIR must be an absolute path'],
    [{ FILES_URL: 'not a url' }, 'FILES_URL must be an http(s) URL'],
    [{ FILES_URL: 'file:///etc/passwd' }, 'FILES_URL must be an http(s) URL'],
    [{ MACHINE_TOKEN: undefined }, 'MACHINE_TOKEN is required'],
    [{ TEMPLATE_TYPE: 'angular' }, 'TEMPLATE_TYPE must be one of: react, vue, svelte, vanilla-ts'],
    [{ HMR_CLIENT_PORT: '0' }, 'HMR_CLIENT_PORT must be 1-65535'],
    [{ NODE_MODULES_DIR: '/does/not/exist' }, 'NODE_MODULES_DIR must be an existing directory'],
  ])('refuses %j with a one-line error naming the variable', (override, message) => {
    const env = { ...valid, ...override } as NodeJS.ProcessEnv;
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(`Invalid environment: ${message}`);
  });
});
