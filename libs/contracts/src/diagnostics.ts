import { z } from 'zod';

/**
 * What a preview tells about its project's code: the build's errors (what Vite
 * failed to compile or resolve) and the page's runtime errors. One contract for
 * the machine that finds them, the api that stores and streams them, the
 * provisioner that puts them on `ready`, and the clients (an AI builder fixes
 * code from them alone, so each names a project file and a line when it can).
 */

/** Bounds of one build state: it travels in one small JSON body and one event. */
export const DIAGNOSTIC_LIMITS = { count: 20, message: 1000, frame: 2000, file: 500, plugin: 100 } as const;

/** Where a preview's page reports its runtime errors: on its own origin, handled by its machine. */
export const RUNTIME_ERRORS_PATH = '/__velocity/runtime-errors';
/** Where a preview's machine answers its current build state, on the preview's own origin (the URL is the capability). */
export const BUILD_STATE_PATH = '/__velocity/build-state';
/**
 * On each module a page loads (`Sec-Fetch-Dest: script` or `style`), the machine's build state
 * (`ok`, `errors`) when the request came: a walk whose modules all loaded and all said `ok`
 * need not ask for the state.
 */
export const BUILD_STATE_HEADER = 'x-velocity-build';
/**
 * Set on a machine's answer when its dev server could not start because of the
 * project's own code (its vite.config): the body's `reason` says why, and the
 * session fails with it at once (the user fixes the project and starts again).
 */
export const START_FAILED_HEADER = 'x-velocity-start-failed';
/** Largest runtime-error report a machine reads. */
export const RUNTIME_REPORT_MAX_BYTES = 16 * 1024;

/** A path inside the project, from its root (`src/App.jsx`, `node_modules/x/y.js`): no host path, no way out. */
export function isProjectRelativePath(path: string): boolean {
  if (path.length === 0 || path.includes('\0') || path.includes('\\')) return false;
  if (path.startsWith('/') || /^[A-Za-z]:/.test(path) || path.startsWith('[')) return false;
  return path.split('/').every((segment) => segment !== '' && segment !== '..');
}

export const projectRelativePathSchema = z
  .string()
  .max(DIAGNOSTIC_LIMITS.file)
  .refine(isProjectRelativePath, 'must be a path relative to the project root (no leading /, no .. segment)');

export const diagnosticSchema = z
  .object({
    kind: z.enum(['build', 'runtime']),
    file: projectRelativePathSchema.optional(),
    /** 1-based, in the file as the project has it. */
    line: z.number().int().positive().optional(),
    /** 1-based, as editors and browsers count (the machine adds 1 to Vite's 0-based `loc.column`). */
    column: z.number().int().positive().optional(),
    message: z.string().min(1).max(DIAGNOSTIC_LIMITS.message),
    /** The Vite plugin that reported it (`vite:import-analysis`, `vite:css`…). */
    plugin: z.string().max(DIAGNOSTIC_LIMITS.plugin).optional(),
    /** The code around the error, or a runtime error's stack. */
    frame: z.string().max(DIAGNOSTIC_LIMITS.frame).optional(),
  })
  .strict();
export type Diagnostic = z.infer<typeof diagnosticSchema>;

export const diagnosticsSchema = z.array(diagnosticSchema).max(DIAGNOSTIC_LIMITS.count);

export const buildStatusSchema = z.enum(['ok', 'errors']);
export type BuildStatus = z.infer<typeof buildStatusSchema>;

/** A preview's build state: `errors` exactly when it has diagnostics; `at` (epoch ms) when it last changed. */
export const buildStateSchema = z
  .object({ state: buildStatusSchema, diagnostics: diagnosticsSchema, at: z.number().int().nonnegative() })
  .strict()
  .superRefine((build, ctx) => {
    if ((build.state === 'errors') !== build.diagnostics.length > 0) {
      ctx.addIssue({ code: 'custom', path: ['state'], message: `must be ${build.diagnostics.length > 0 ? 'errors' : 'ok'} with ${build.diagnostics.length} diagnostics` });
    }
  });
export type BuildState = z.infer<typeof buildStateSchema>;

/** The build state of these diagnostics. */
export function buildStateOf(diagnostics: Diagnostic[], at: number): BuildState {
  return { state: diagnostics.length > 0 ? 'errors' : 'ok', diagnostics, at };
}

/** Whether two lists say the same (the time they were seen aside). */
export function sameDiagnostics(a: readonly Diagnostic[], b: readonly Diagnostic[]): boolean {
  return a.length === b.length && a.every((d, i) => JSON.stringify(d) === JSON.stringify(b[i]));
}

/** The diagnostic within DIAGNOSTIC_LIMITS: long texts are cut (with an ellipsis), a path that is not project-relative is dropped. */
export function clampDiagnostic(diagnostic: Diagnostic): Diagnostic {
  const { file, message, frame, plugin, line, column, kind } = diagnostic;
  return {
    kind,
    ...(file !== undefined && file.length <= DIAGNOSTIC_LIMITS.file && isProjectRelativePath(file) ? { file } : {}),
    ...(line !== undefined && Number.isInteger(line) && line > 0 ? { line } : {}),
    ...(column !== undefined && Number.isInteger(column) && column > 0 ? { column } : {}),
    message: cut(message.trim() || 'unknown error', DIAGNOSTIC_LIMITS.message),
    ...(plugin ? { plugin: cut(plugin, DIAGNOSTIC_LIMITS.plugin) } : {}),
    ...(frame?.trim() ? { frame: cut(frame, DIAGNOSTIC_LIMITS.frame) } : {}),
  };
}

function cut(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/**
 * What a preview's page sends to `RUNTIME_ERRORS_PATH`: the errors it saw since
 * its last report. `source` is the URL of the script, `stack` the error's stack
 * as the browser wrote it (positions in the served code; the machine maps them
 * back to the project's files). Strings are cut by the machine, not refused.
 */
export const runtimeErrorReportSchema = z
  .object({
    errors: z
      .array(
        z
          .object({
            message: z.string(),
            source: z.string().optional(),
            line: z.number().int().nonnegative().optional(),
            column: z.number().int().nonnegative().optional(),
            stack: z.string().optional(),
          })
          .strict(),
      )
      .min(1)
      .max(10),
  })
  .strict();
export type RuntimeErrorReport = z.infer<typeof runtimeErrorReportSchema>['errors'][number];
