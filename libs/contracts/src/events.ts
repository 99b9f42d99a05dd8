import { z } from 'zod';
import { buildStatusSchema, diagnosticsSchema } from './diagnostics';

/**
 * Session events: what the client sees over Server-Sent Events. They are stored
 * per session (see EventLog), so late and reconnecting clients miss nothing.
 */
export const PROVISION_STEPS = ['ensure-project', 'commit-session', 'install-dependencies', 'create-machine', 'verify-url', 'activate'] as const;
export const provisionStepSchema = z.enum(PROVISION_STEPS);
export type ProvisionStep = z.infer<typeof provisionStepSchema>;

const base = { sessionId: z.string().uuid(), at: z.number().int() };

export const sessionEventSchema = z.discriminatedUnion('type', [
  z.object({ ...base, type: z.literal('queued') }),
  z.object({
    ...base,
    type: z.literal('progress'),
    step: provisionStepSchema,
    /** `running`: what a long step has done so far (an install's packages and bytes). */
    state: z.enum(['started', 'running', 'done']),
    /** Time the step took, on `done`. */
    ms: z.number().nonnegative().optional(),
    /** install-dependencies: packages fetched so far (on `running`) or in the set (on `done`). */
    packages: z.number().int().nonnegative().optional(),
    /** install-dependencies: bytes installed so far (on `running`) or in all (on `done`). */
    bytes: z.number().int().nonnegative().optional(),
    /** install-dependencies on `done`: the set was installed before (nothing was installed now). */
    cached: z.boolean().optional(),
    attempt: z.number().int().positive(),
  }),
  z.object({
    ...base,
    type: z.literal('ready'),
    previewUrl: z.string().url(),
    expiresAt: z.string(),
    /** The session runs on a machine claimed from the warm pool. */
    pooled: z.boolean().optional(),
    /** The build's errors when it became ready (empty when it compiled clean); the app is served either way. */
    diagnostics: diagnosticsSchema.optional(),
  }),
  z.object({
    ...base,
    type: z.literal('failed'),
    step: provisionStepSchema.optional(),
    reason: z.string(),
    retryable: z.boolean(),
  }),
  /** The preview's build state changed (an edit broke or fixed it, the page threw): every diagnostic it has now. */
  z.object({ ...base, type: z.literal('diagnostics'), state: buildStatusSchema, diagnostics: diagnosticsSchema }),
  z.object({ ...base, type: z.literal('ending'), reason: z.string() }),
  z.object({ ...base, type: z.literal('ended'), reason: z.string() }),
]);
export type SessionEvent = z.infer<typeof sessionEventSchema>;
export type SessionEventType = SessionEvent['type'];

/**
 * Events after which a session's stream has nothing more to say: the session is
 * over. The api closes the stream after one; until then it stays open, `ready`
 * included (`diagnostics` follow while the session lives).
 */
export const TERMINAL_EVENTS: readonly SessionEventType[] = ['failed', 'ended'];

/**
 * Events that settle a client waiting for its session to start: the URL
 * (`ready`) or why there is none (`failed`, `ended`). Such a client stops
 * reading (and closes the stream) at the first of them.
 */
export const SETTLED_EVENTS: readonly SessionEventType[] = ['ready', 'failed', 'ended'];

/** Event names as published on the bus, for consumers outside the SSE path. */
export const EventName = { SessionReady: 'session.ready', SessionFailed: 'session.failed', SessionEnded: 'session.ended' } as const;
