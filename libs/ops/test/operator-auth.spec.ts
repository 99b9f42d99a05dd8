import { ConfigError, loadConfig, requestIdFrom } from '@velocity/contracts';
import { checkOperator, operatorChallenges, operatorSurfacesEnabled, safeEqual } from '../src/operator-auth';

/** The operator guard's decisions and the configuration of its credentials. */
describe('operator guard', () => {
  const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  const both = { OPERATOR_USER: 'ops', OPERATOR_PASSWORD: 'a-long-password', OPERATOR_TOKEN: 't'.repeat(32) };

  it('is off without credentials, whatever is sent', () => {
    expect(operatorSurfacesEnabled({})).toBe(false);
    for (const header of [undefined, '', basic('ops', 'a-long-password'), `Bearer ${'t'.repeat(32)}`]) expect(checkOperator({}, header)).toBe('off');
  });

  it('allows the right Basic credentials and the right token, and nothing else', () => {
    expect(checkOperator(both, basic('ops', 'a-long-password'))).toBe('allowed');
    expect(checkOperator(both, `Bearer ${'t'.repeat(32)}`)).toBe('allowed');
    expect(checkOperator(both, `bearer ${'t'.repeat(32)}`)).toBe('allowed');
    for (const header of [
      undefined,
      '',
      'Basic',
      basic('ops', 'a-long-passwor'),
      basic('ops', 'a-long-password '),
      basic('Ops', 'a-long-password'),
      basic('ops:a-long-password', ''),
      'Basic bm90LWEtcGFpcg==',
      `Bearer ${'t'.repeat(31)}`,
      `Bearer ${'t'.repeat(33)}`,
      `Token ${'t'.repeat(32)}`,
    ]) {
      expect({ header, decision: checkOperator(both, header) }).toEqual({ header, decision: 'denied' });
    }
  });

  it('a password may hold colons; only the configured scheme is accepted', () => {
    expect(checkOperator({ OPERATOR_USER: 'ops', OPERATOR_PASSWORD: 'with:colons:in' }, basic('ops', 'with:colons:in'))).toBe('allowed');
    expect(checkOperator({ OPERATOR_TOKEN: 't'.repeat(32) }, basic('ops', 't'.repeat(32)))).toBe('denied');
    expect(checkOperator({ OPERATOR_USER: 'ops', OPERATOR_PASSWORD: 'a-long-password' }, 'Bearer a-long-password')).toBe('denied');
  });

  it('challenges with every configured scheme', () => {
    expect(operatorChallenges(both)).toEqual(['Basic realm="velocity-preview operators", charset="UTF-8"', 'Bearer realm="velocity-preview operators"']);
    expect(operatorChallenges({ OPERATOR_TOKEN: 't'.repeat(32) })).toEqual(['Bearer realm="velocity-preview operators"']);
  });

  it('compares any lengths in constant time', () => {
    expect(safeEqual('a', 'a')).toBe(true);
    expect(safeEqual('a', 'ab')).toBe(false);
    expect(safeEqual('', '')).toBe(true);
  });
});

describe('operator configuration', () => {
  const error = (env: Record<string, string>) => {
    try {
      loadConfig(env);
    } catch (err) {
      return err as ConfigError;
    }
    throw new Error('expected a ConfigError');
  };

  it('is off by default and has the workers\' operator ports', () => {
    const config = loadConfig({});
    expect(operatorSurfacesEnabled(config)).toBe(false);
    expect(config).toMatchObject({ METRICS_HOST: '127.0.0.1', PROVISIONER_METRICS_PORT: 9101, CLEANUP_METRICS_PORT: 9102, READY_TIMEOUT_MS: 2000 });
    expect(loadConfig({ PROVISIONER_METRICS_PORT: '0' }).PROVISIONER_METRICS_PORT).toBe(0);
  });

  it('a user without a password, or the reverse, is a ConfigError naming what is missing', () => {
    expect(error({ OPERATOR_USER: 'ops' }).variable).toBe('OPERATOR_PASSWORD');
    expect(error({ OPERATOR_PASSWORD: 'a-long-password' }).variable).toBe('OPERATOR_USER');
  });

  it('refuses weak or malformed credentials without echoing the secret', () => {
    const short = error({ OPERATOR_USER: 'ops', OPERATOR_PASSWORD: 'short-pw' });
    expect(short.variable).toBe('OPERATOR_PASSWORD');
    expect(short.message).not.toContain('short-pw');
    const token = error({ OPERATOR_TOKEN: 'too-short-token' });
    expect(token.variable).toBe('OPERATOR_TOKEN');
    expect(token.message).not.toContain('too-short-token');
    expect(error({ OPERATOR_USER: 'has:colon', OPERATOR_PASSWORD: 'a-long-password' }).variable).toBe('OPERATOR_USER');
    expect(error({ CLEANUP_METRICS_PORT: '70000' }).variable).toBe('CLEANUP_METRICS_PORT');
  });
});

describe('request ids', () => {
  it('keeps a safe token and replaces anything else', () => {
    expect(requestIdFrom('abc-123_x.y:z')).toBe('abc-123_x.y:z');
    expect(requestIdFrom(['first-id', 'second'])).toBe('first-id');
    for (const unsafe of [undefined, '', 'a b', 'a\nb', 'ü', 'x'.repeat(129), '<script>']) {
      expect(requestIdFrom(unsafe)).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    }
  });
});
