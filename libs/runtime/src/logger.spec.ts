import { createLogger, logLevelFromEnv, pinoOf, type LoggerOptions, type LogLevel } from './logger';

/** A logger whose lines land in `lines`, parsed, and in `raw`, as written. */
function capture(level: LogLevel = 'debug', options: LoggerOptions = {}) {
  const raw: string[] = [];
  const logger = createLogger('logger-test', level, { ...options, destination: { write: (chunk: string) => void raw.push(chunk) } });
  const lines = () => raw.map((line) => JSON.parse(line) as Record<string, unknown>);
  return { logger, raw, lines };
}

describe('createLogger', () => {
  it('writes one JSON line an event: level by name, ISO time, app, msg, the fields', () => {
    const { logger, raw, lines } = capture();
    logger.info('hello', { n: 1 });
    expect(raw).toHaveLength(1);
    expect(raw[0].endsWith('}\n')).toBe(true);
    const [line] = lines();
    expect(line).toEqual({ level: 'info', time: expect.any(String), app: 'logger-test', msg: 'hello', n: 1 });
    expect(new Date(line.time as string).toISOString()).toBe(line.time);
  });

  it("keeps an error's stack and its causes, nested", () => {
    const { logger, lines } = capture();
    const root = new TypeError('socket hang up');
    const middle = new Error('could not reach the registry', { cause: root });
    const err = Object.assign(new Error('install failed', { cause: middle }), { code: 'E_INSTALL' });
    logger.error('step failed', { err, step: 'install' });
    const [line] = lines();
    expect(line).toMatchObject({ level: 'error', msg: 'step failed', step: 'install' });
    expect(line.err).toEqual({
      type: 'Error',
      message: 'install failed',
      stack: err.stack,
      code: 'E_INSTALL',
      cause: { type: 'Error', message: 'could not reach the registry', stack: middle.stack, cause: { type: 'TypeError', message: 'socket hang up', stack: root.stack } },
    });
    expect(err.stack).toContain('logger.spec.ts');
  });

  it('serialises an Error under another key the same way, and leaves a non-Error err as it is', () => {
    const { logger, lines } = capture();
    const failure = new Error('outer', { cause: new Error('inner') });
    logger.warn('retrying', { failure, err: 'a message only' });
    const [line] = lines();
    expect(line.failure).toMatchObject({ type: 'Error', message: 'outer', stack: failure.stack, cause: { message: 'inner' } });
    expect(line.err).toBe('a message only');
  });

  it('child() binds fields on every line of the scope, and the parent stays as it was', () => {
    const { logger, lines } = capture();
    const session = logger.child({ sessionId: 's-1' });
    const job = session.child({ jobId: 'j-1' });
    job.info('step done', { step: 'create' });
    session.debug('session line');
    logger.info('process line');
    const [a, b, c] = lines();
    expect(a).toMatchObject({ sessionId: 's-1', jobId: 'j-1', step: 'create', msg: 'step done' });
    expect(b).toMatchObject({ sessionId: 's-1', msg: 'session line', level: 'debug' });
    expect(b).not.toHaveProperty('jobId');
    expect(c).not.toHaveProperty('sessionId');
  });

  it("adds the context's fields read per line; a bound field wins, and no key appears twice", () => {
    let current: Record<string, unknown> | undefined = { requestId: 'r-1' };
    const { logger, raw, lines } = capture('debug', { context: () => current });
    logger.info('in a request');
    current = { requestId: 'r-2', sessionId: 's-2' };
    logger.info('in another');
    logger.child({ requestId: 'bound' }).info('bound wins');
    logger.info('the line wins', { sessionId: 'explicit' });
    current = undefined;
    logger.info('outside');
    const [first, second, bound, explicit, outside] = lines();
    expect(first).toMatchObject({ requestId: 'r-1' });
    expect(first).not.toHaveProperty('sessionId');
    expect(second).toMatchObject({ requestId: 'r-2', sessionId: 's-2' });
    expect(bound).toMatchObject({ requestId: 'bound', sessionId: 's-2' });
    expect(raw[2].match(/"requestId"/g)).toHaveLength(1);
    expect(explicit).toMatchObject({ requestId: 'r-2', sessionId: 'explicit' });
    expect(raw[3].match(/"sessionId"/g)).toHaveLength(1);
    expect(outside).not.toHaveProperty('requestId');
  });

  it('writes only lines at or above its level; silent writes none', () => {
    const warn = capture('warn');
    warn.logger.debug('d');
    warn.logger.info('i');
    warn.logger.warn('w');
    warn.logger.child({ a: 1 }).error('e');
    expect(warn.lines().map((l) => [l.level, l.msg])).toEqual([
      ['warn', 'w'],
      ['error', 'e'],
    ]);
    const silent = capture('silent');
    for (const level of ['debug', 'info', 'warn', 'error'] as const) silent.logger[level]('x');
    expect(silent.raw).toEqual([]);
  });

  it('takes its default level from LOG_LEVEL, info when it names none', () => {
    expect(logLevelFromEnv('warn')).toBe('warn');
    expect(logLevelFromEnv('silent')).toBe('silent');
    expect(logLevelFromEnv('verbose')).toBe('info');
    expect(logLevelFromEnv(undefined)).toBe('info');
  });

  it('never writes an Authorization header or a cookie', () => {
    const { logger, lines } = capture();
    logger.warn('upstream refused', { headers: { authorization: 'Bearer secret-token', cookie: 'sid=secret', accept: 'text/html' } });
    const [line] = lines();
    expect(line.headers).toEqual({ authorization: '[redacted]', cookie: '[redacted]', accept: 'text/html' });
  });

  it('gives pino-aware libraries the pino logger behind it', () => {
    const { logger, lines } = capture();
    pinoOf(logger.child({ sessionId: 's-3' })).info({ via: 'pino' }, 'direct');
    expect(lines()[0]).toMatchObject({ app: 'logger-test', sessionId: 's-3', via: 'pino', msg: 'direct' });
    expect(() => pinoOf({ ...logger })).toThrow(/not made by createLogger/);
  });
});
