import type { BuildState } from '@velocity/contracts';
import type { PreviewSession } from '@velocity/session-store';

/** A session as clients see it: no internal addresses; `build`, its build state as its events last said it (null until known). */
export function sessionView(session: PreviewSession, build: BuildState | null = null) {
  return {
    id: session.id,
    projectId: session.projectId,
    status: session.status,
    tier: session.tier,
    previewUrl: session.status === 'active' ? session.previewUrl : null,
    expiresAt: session.expiresAt,
    endedAt: session.endedAt,
    errorMessage: session.errorMessage,
    errorStep: session.errorStep,
    createdAt: session.createdAt,
    updatedAt: session.updatedAt,
    build,
  };
}
