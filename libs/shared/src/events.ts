import { z } from 'zod';

/**
 * Session events: what the client sees over Server-Sent Events. They are stored
 * per session (see EventLog), so late and reconnecting clients miss nothing.
 */
export const PROVISION_STEPS = ['ensure-project', 'commit-session', 'create-machine', 'verify-url', 'activate'] as const;
export const provisionStepSchema = z.enum(PROVISION_STEPS);
export type ProvisionStep = z.infer<typeof provisionStepSchema>;

const base = { sessionId: z.string().uuid(), at: z.number().int() };

export const sessionEventSchema = z.discriminatedUnion('type', [
  z.object({ ...base, type: z.literal('queued') }),
  z.object({
    ...base,
    type: z.literal('progress'),
    step: provisionStepSchema,
    state: z.enum(['started', 'done']),
    /** Time the step took, on `done`. */
    ms: z.number().nonnegative().optional(),
    attempt: z.number().int().positive(),
  }),
  z.object({
    ...base,
    type: z.literal('ready'),
    previewUrl: z.string().url(),
    expiresAt: z.string(),
    /** The session runs on a machine claimed from the warm pool. */
    pooled: z.boolean().optional(),
  }),
  z.object({
    ...base,
    type: z.literal('failed'),
    step: provisionStepSchema.optional(),
    reason: z.string(),
    retryable: z.boolean(),
  }),
  z.object({ ...base, type: z.literal('ending'), reason: z.string() }),
  z.object({ ...base, type: z.literal('ended'), reason: z.string() }),
]);
export type SessionEvent = z.infer<typeof sessionEventSchema>;
export type SessionEventType = SessionEvent['type'];

/** Events after which a session's stream has nothing more to say to a waiting client. */
export const TERMINAL_EVENTS: readonly SessionEventType[] = ['ready', 'failed', 'ended'];

/** Event names as published on the bus, for consumers outside the SSE path. */
export const EventName = { SessionReady: 'session.ready', SessionFailed: 'session.failed', SessionEnded: 'session.ended' } as const;
