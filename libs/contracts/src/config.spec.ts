import { apiInternalUrl, ConfigError, flyMachinesSettings, loadConfig, publicUrl } from './config';

function configError(env: NodeJS.ProcessEnv): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error(`loadConfig(${JSON.stringify(env)}) did not throw`);
}

describe('loadConfig', () => {
  it('fills every default from an empty environment', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      NODE_ENV: 'development',
      LOG_LEVEL: 'info',
      DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/velocity_preview',
      REDIS_URL: 'redis://127.0.0.1:6379',
      QUEUE_PREFIX: 'vp',
      API_HOST: '127.0.0.1',
      API_PORT: 3000,
      MACHINE_PROVIDER: 'local',
      LOCAL_MACHINES_DIR: '.velocity/machines',
      SESSION_TTL_SECONDS: 1800,
      PROVISION_CONCURRENCY: 10,
      PROVISION_DEADLINE_MS: 60_000,
      MACHINE_START_TIMEOUT_MS: 30_000,
      VERIFY_TIMEOUT_MS: 30_000,
      PROVISION_ATTEMPTS: 3,
      PROVISION_BACKOFF_MS: 500,
      EVENT_STREAM_TTL_SECONDS: 86_400,
      SSE_HEARTBEAT_MS: 15_000,
    });
    expect(config.PUBLIC_URL).toBeUndefined();
    expect(config.API_INTERNAL_URL).toBeUndefined();
  });

  it('coerces numbers from strings', () => {
    const config = loadConfig({ API_PORT: '8080', SESSION_TTL_SECONDS: '60', PROVISION_CONCURRENCY: '4' });
    expect(config.API_PORT).toBe(8080);
    expect(config.SESSION_TTL_SECONDS).toBe(60);
    expect(config.PROVISION_CONCURRENCY).toBe(4);
  });

  it('treats an empty value as unset', () => {
    expect(loadConfig({ API_PORT: '', QUEUE_PREFIX: '' })).toMatchObject({ API_PORT: 3000, QUEUE_PREFIX: 'vp' });
  });

  it('keeps given values and ignores unknown variables', () => {
    const config = loadConfig({
      NODE_ENV: 'test',
      LOG_LEVEL: 'debug',
      QUEUE_PREFIX: 'vp-test:1_a',
      DATABASE_URL: 'postgres://u:p@db.example.com:6543/app',
      SOMETHING_ELSE: 'x',
    });
    expect(config).toMatchObject({
      NODE_ENV: 'test',
      LOG_LEVEL: 'debug',
      QUEUE_PREFIX: 'vp-test:1_a',
      DATABASE_URL: 'postgres://u:p@db.example.com:6543/app',
    });
    expect(config).not.toHaveProperty('SOMETHING_ELSE');
  });

  it.each([
    ['API_PORT', 'abc'],
    ['API_PORT', '0'],
    ['API_PORT', '70000'],
    ['API_PORT', '80.5'],
    ['DATABASE_URL', 'nope'],
    ['REDIS_URL', 'not a url'],
    ['PUBLIC_URL', 'localhost'],
    ['QUEUE_PREFIX', 'has space'],
    ['QUEUE_PREFIX', 'a{b}'],
    ['MACHINE_PROVIDER', 'docker'],
    ['LOG_LEVEL', 'verbose'],
    ['NODE_ENV', 'staging'],
    ['MACHINE_TOKEN_SECRET', 'short'],
    ['SESSION_TTL_SECONDS', '-5'],
    ['PROVISION_ATTEMPTS', 'three'],
  ])('rejects %s=%j with a ConfigError naming the variable', (variable, value) => {
    const error = configError({ [variable]: value });
    expect(error.name).toBe('ConfigError');
    expect(error.variable).toBe(variable);
    expect(error.message).toContain(`Invalid configuration: ${variable}`);
    expect(error.message).toContain(JSON.stringify(value));
  });

  it('names the bad variable even among good ones', () => {
    expect(configError({ API_PORT: '3001', DATABASE_URL: 'nope', REDIS_URL: 'redis://r:6379' }).variable).toBe('DATABASE_URL');
  });
});

describe('loadConfig: MACHINE_TOKEN_SECRET in production', () => {
  it('refuses the development default when NODE_ENV=production, naming the variable', () => {
    const error = configError({ NODE_ENV: 'production' });
    expect(error.variable).toBe('MACHINE_TOKEN_SECRET');
    expect(error.message).toMatch(/^Invalid configuration: MACHINE_TOKEN_SECRET must be set to a secret of its own when NODE_ENV=production/);
    // Set explicitly to the default, it is refused all the same (and not echoed).
    const explicit = configError({ NODE_ENV: 'production', MACHINE_TOKEN_SECRET: loadConfig({}).MACHINE_TOKEN_SECRET });
    expect(explicit.variable).toBe('MACHINE_TOKEN_SECRET');
    expect(explicit.message).not.toContain(loadConfig({}).MACHINE_TOKEN_SECRET);
  });

  it('accepts a secret of its own in production, and the default elsewhere', () => {
    expect(loadConfig({ NODE_ENV: 'production', MACHINE_TOKEN_SECRET: 'a-production-secret-of-its-own' }).MACHINE_TOKEN_SECRET).toBe('a-production-secret-of-its-own');
    expect(loadConfig({ NODE_ENV: 'test' }).MACHINE_TOKEN_SECRET).toBe(loadConfig({}).MACHINE_TOKEN_SECRET);
  });
});

describe('loadConfig: the Fly machine provider', () => {
  const fly = { MACHINE_PROVIDER: 'fly', FLY_API_TOKEN: 'fo1_token', FLY_APP_NAME: 'vp-previews', FLY_IMAGE: 'registry.fly.io/vp:1', PREVIEW_DOMAIN: 'preview.example.com' };

  it('accepts MACHINE_PROVIDER=fly with a token, an app, an image and a preview domain, and defaults the API URL', () => {
    expect(loadConfig(fly)).toMatchObject({ ...fly, FLY_API_URL: 'https://api.machines.dev/v1' });
    expect(loadConfig({ ...fly, FLY_REGION: 'ams', FLY_API_URL: 'http://_api.internal:4280/v1' })).toMatchObject({
      FLY_REGION: 'ams',
      FLY_API_URL: 'http://_api.internal:4280/v1',
    });
  });

  it('defaults to the local provider, which needs no FLY_* variable', () => {
    expect(loadConfig({})).toMatchObject({ MACHINE_PROVIDER: 'local', FLY_API_URL: 'https://api.machines.dev/v1' });
    expect(loadConfig({}).FLY_API_TOKEN).toBeUndefined();
  });

  it('MACHINE_PROVIDER=fly without PREVIEW_DOMAIN is a ConfigError naming it (the default names the api)', () => {
    for (const value of [undefined, '']) {
      const error = configError({ ...fly, PREVIEW_DOMAIN: value });
      expect(error.variable).toBe('PREVIEW_DOMAIN');
      expect(error.message).toContain('Invalid configuration: PREVIEW_DOMAIN is required when MACHINE_PROVIDER=fly');
    }
  });

  it('the api needs no Fly token, app or image; a process that makes Fly machines is refused without each, naming it', () => {
    const api = loadConfig({ MACHINE_PROVIDER: 'fly', PREVIEW_DOMAIN: 'preview.example.com' });
    expect(api.FLY_API_TOKEN).toBeUndefined();
    expect(flyMachinesSettings(loadConfig(fly))).toEqual({ token: 'fo1_token', appName: 'vp-previews', image: 'registry.fly.io/vp:1' });
    for (const variable of ['FLY_API_TOKEN', 'FLY_APP_NAME', 'FLY_IMAGE']) {
      for (const value of [undefined, '']) {
        const call = () => flyMachinesSettings(loadConfig({ ...fly, [variable]: value }));
        expect(call).toThrow(ConfigError);
        expect(call).toThrow(`Invalid configuration: ${variable} is required when MACHINE_PROVIDER=fly`);
      }
    }
  });

  it('rejects a FLY_API_URL that is not a URL', () => {
    expect(configError({ ...fly, FLY_API_URL: 'machines.dev' }).variable).toBe('FLY_API_URL');
  });
});

describe('publicUrl and apiInternalUrl', () => {
  it('default to the api host and port', () => {
    const config = loadConfig({ API_HOST: '0.0.0.0', API_PORT: '4000' });
    expect(publicUrl(config)).toBe('http://0.0.0.0:4000');
    expect(apiInternalUrl(config)).toBe('http://0.0.0.0:4000');
  });

  it('use the configured URLs without a trailing slash', () => {
    const config = loadConfig({ PUBLIC_URL: 'https://preview.example.com/', API_INTERNAL_URL: 'http://api.internal:3000/' });
    expect(publicUrl(config)).toBe('https://preview.example.com');
    expect(apiInternalUrl(config)).toBe('http://api.internal:3000');
  });
});
