import { allowedFrom, canTransition, InvalidTransitionError, isSessionLive, isTerminal, SESSION_STATUSES, sessionStatusSchema, type SessionStatus } from './session-state';

// The expected machine, written out independently of session-state.ts:
// queued -> creating -> starting -> active -> ending -> ended, error from any state before active.
const ALLOWED = new Set([
  'queued>creating',
  'queued>error',
  'creating>starting',
  'creating>error',
  'starting>starting',
  'starting>active',
  'starting>error',
  'active>ending',
  'ending>ended',
]);
const ALL: SessionStatus[] = ['queued', 'creating', 'starting', 'active', 'ending', 'ended', 'error'];
const pairs = ALL.flatMap((from) => ALL.map((to) => [from, to] as const));

describe('session state machine', () => {
  it('has exactly the seven statuses', () => {
    expect([...SESSION_STATUSES].sort()).toEqual([...ALL].sort());
  });

  it('a session is live (its machine token works) until it ends: queued, creating, starting, active', () => {
    expect(ALL.filter(isSessionLive)).toEqual(['queued', 'creating', 'starting', 'active']);
  });

  it.each(pairs.filter(([from, to]) => ALLOWED.has(`${from}>${to}`)))('allows %s -> %s', (from, to) => {
    expect(canTransition(from, to)).toBe(true);
  });

  it.each(pairs.filter(([from, to]) => !ALLOWED.has(`${from}>${to}`)))('forbids %s -> %s', (from, to) => {
    expect(canTransition(from, to)).toBe(false);
  });

  it('covers all 49 pairs, 8 of them allowed', () => {
    expect(pairs).toHaveLength(49);
    expect(pairs.filter(([from, to]) => canTransition(from, to))).toHaveLength(ALLOWED.size);
  });

  it.each([
    ['queued', []],
    ['creating', ['queued']],
    ['starting', ['creating', 'starting']],
    ['active', ['starting']],
    ['ending', ['active']],
    ['ended', ['ending']],
    ['error', ['queued', 'creating', 'starting']],
  ] as const)('allowedFrom(%s) is %j', (to, expected) => {
    expect([...allowedFrom(to)].sort()).toEqual([...expected].sort());
  });

  it('never allows error once a session was active', () => {
    for (const from of ['active', 'ending', 'ended', 'error'] as const) {
      expect(allowedFrom('error')).not.toContain(from);
    }
  });

  it('treats ended and error as terminal, and only them', () => {
    expect(ALL.filter(isTerminal).sort()).toEqual(['ended', 'error']);
    for (const status of ALL.filter(isTerminal)) {
      expect(ALL.filter((to) => canTransition(status, to))).toEqual([]);
    }
  });

  it('validates status strings', () => {
    expect(sessionStatusSchema.safeParse('active').success).toBe(true);
    expect(sessionStatusSchema.safeParse('running').success).toBe(false);
  });

  it('names the session and both states in InvalidTransitionError', () => {
    const error = new InvalidTransitionError('s-1', 'active', 'creating');
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('InvalidTransitionError');
    expect(error.message).toBe('Session s-1 cannot move from active to creating');
  });
});
