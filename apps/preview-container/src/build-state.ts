import { stripVTControlCharacters } from 'node:util';
import { DIAGNOSTIC_LIMITS, buildStateOf, clampDiagnostic, isProjectRelativePath, sameDiagnostics, type BuildState, type Diagnostic, type RuntimeErrorReport, isProjectModulePath } from '@velocity/contracts';

/**
 * The preview's build state, as the machine sees it: the errors Vite reports
 * (fed by vite-build-watch.ts), module requests of the page that answered 404,
 * and the runtime errors the page reports. A build error stays until its module
 * transforms again without one; runtime errors stay until the code changes.
 * Every change of what it says goes to its listeners (the reporter to the api).
 */

/** What Vite puts in an `{ type: 'error', err }` payload, and on the errors it throws (Vite 5–8). */
export interface ViteErrorLike {
  message?: string;
  id?: string;
  loc?: { file?: string; line?: number; column?: number };
  plugin?: string;
  frame?: string;
}

/** Where a position of a served module is in the project: the file and, when the module has a source map, the line in it. */
export type SourceLocator = (urlPath: string, line?: number, column?: number) => { file?: string; line?: number; column?: number } | undefined;

/** Runtime errors kept at most: the first ones are the ones to fix; an error in a loop must not push them out. */
export const RUNTIME_ERRORS_KEPT = 10;

interface BuildEntry {
  diagnostic: Diagnostic;
  /** The module URL that, once it transforms again, says whether the error is still there. */
  recheckUrl?: string;
}

export class BuildTracker {
  /** Build errors by what they are about: `file:<absolute file>`, `request:<url path>`, `message:<text>`. */
  private readonly build = new Map<string, BuildEntry>();
  private runtime: Diagnostic[] = [];
  private state: BuildState;
  private readonly listeners = new Set<(state: BuildState) => void>();
  /** Maps a served module's position back to the project's file (set once Vite runs). */
  locate: SourceLocator = (urlPath, line, column) => ({ file: projectFileOfUrl(urlPath), line, column });

  constructor(
    /** Host paths in texts as the lockdown names them (project-relative, `node_modules/…`, `[host]/…`); set once the paths are known. */
    public hidePaths: (text: string) => string = (text) => text,
    private readonly now: () => number = Date.now,
  ) {
    this.state = buildStateOf([], now());
  }

  get current(): BuildState {
    return this.state;
  }

  /** Calls `listener` with each new state; returns the unsubscribe. */
  onChange(listener: (state: BuildState) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** An error Vite reported or threw; `fallbackFile` is the absolute file being transformed, when the error names none. */
  buildError(err: ViteErrorLike, recheckUrl?: string, fallbackFile?: string): void {
    const { diagnostic, file } = this.diagnosticOf(err, fallbackFile);
    const key = file ? `file:${file}` : `message:${diagnostic.message}`;
    this.build.set(key, { diagnostic, recheckUrl: recheckUrl ?? this.build.get(key)?.recheckUrl });
    this.changed();
  }

  /**
   * The module of this absolute file (at `urlPath`) transformed without error: its errors are gone, as are a 404
   * of its URL and the errors that were found transforming it (one in a file it pulls in, such as a CSS `@import`).
   */
  moduleOk(file: string | undefined, urlPath?: string): void {
    const url = urlPath === undefined ? undefined : stripQuery(urlPath);
    const keys = [file ? `file:${stripQuery(file)}` : '', url ? `request:${url}` : ''];
    let removed = false;
    for (const [key, entry] of this.build) {
      if (keys.includes(key) || (url !== undefined && entry.recheckUrl === url)) removed = this.build.delete(key) || removed;
    }
    if (removed) this.changed();
  }

  /** This absolute file no longer exists: errors in it are no longer the project's. */
  fileGone(file: string): void {
    if (this.build.delete(`file:${stripQuery(file)}`)) this.changed();
  }

  /** A module request of the page answered: a 404 is a module the page cannot load; a success clears that. */
  moduleRequestFinished(url: string, status: number): void {
    const path = stripQuery(url);
    if (!isProjectModulePath(path)) return;
    const key = `request:${path}`;
    if (status < 400) {
      if (this.build.delete(key)) this.changed();
      return;
    }
    // Other failures (a 500 from a transform) come with Vite's own error payload.
    if (status !== 404) return;
    const file = projectFileOfUrl(path);
    const diagnostic = clampDiagnostic({ kind: 'build', ...(file ? { file } : {}), message: `${path} answered 404: the page imports a module that does not exist` });
    this.build.set(key, { diagnostic, recheckUrl: path });
    this.changed();
  }

  /**
   * A module the page imports (`importerFile`, absolute, imports it; or the page itself) does not exist:
   * the page gets a 404 for it. Until it exists again or nothing imports it.
   */
  missingModule(url: string, importerFile?: string): void {
    const path = stripQuery(url);
    const importer = importerFile ? this.projectPath(importerFile) : undefined;
    const file = importer ?? projectFileOfUrl(path);
    const message = importer ? `imports ${path}, which does not exist (the page gets a 404 for it)` : `${path} does not exist (the page gets a 404 for it)`;
    this.build.set(`request:${path}`, { diagnostic: clampDiagnostic({ kind: 'build', ...(file ? { file } : {}), message }), recheckUrl: path });
    this.changed();
  }

  /** Nothing asks for this module any more: a 404 of it is no longer the page's. */
  requestGone(url: string): void {
    if (this.build.delete(`request:${stripQuery(url)}`)) this.changed();
  }

  /** Build errors whose module should be transformed again to learn whether they are still there. */
  recheckUrls(): string[] {
    return [...new Set([...this.build.values()].flatMap((entry) => (entry.recheckUrl ? [entry.recheckUrl] : [])))];
  }

  /** The project's code changed: runtime errors of the code before are stale, as are errors that name no module. */
  codeChanged(): void {
    let removed = this.runtime.length > 0;
    this.runtime = [];
    for (const key of this.build.keys()) if (key.startsWith('message:')) removed = this.build.delete(key) || removed;
    if (removed) this.changed();
  }

  /** Errors the page reported (already checked against runtimeErrorReportSchema). */
  runtimeErrors(reports: RuntimeErrorReport[]): void {
    let added = false;
    for (const report of reports) {
      if (this.runtime.length >= RUNTIME_ERRORS_KEPT) break;
      const diagnostic = this.runtimeDiagnostic(report);
      if (this.runtime.some((kept) => JSON.stringify(kept) === JSON.stringify(diagnostic))) continue;
      this.runtime.push(diagnostic);
      added = true;
    }
    if (added) this.changed();
  }

  /** A Vite error as a diagnostic, and the absolute file it is about (without its query), if any. */
  diagnosticOf(err: ViteErrorLike, fallbackFile?: string): { diagnostic: Diagnostic; file?: string } {
    const absolute = stripQuery(err.loc?.file || err.id || fallbackFile || '') || undefined;
    const file = absolute ? this.projectPath(absolute) : undefined;
    const message = this.hidePaths(stripVTControlCharacters(err.message ?? 'unknown error'));
    // Vite's `loc.column` is 0-based (Rollup's convention); the contract's is 1-based, as editors and browsers count.
    let line = err.loc?.line;
    let column = err.loc?.column === undefined ? undefined : err.loc.column + 1;
    if (line === undefined && file) [line, column] = positionInMessage(message, file);
    const frame = err.frame ? this.hidePaths(stripVTControlCharacters(err.frame)) : undefined;
    const diagnostic = clampDiagnostic({ kind: 'build', ...(file ? { file } : {}), line, column, message, plugin: err.plugin, frame });
    return { diagnostic, file: absolute };
  }

  /** An absolute path as the project names it, or undefined when it is not inside the project. */
  projectPath(absolute: string): string | undefined {
    const hidden = this.hidePaths(absolute);
    return hidden !== absolute && isProjectRelativePath(hidden) ? hidden : undefined;
  }

  private runtimeDiagnostic(report: RuntimeErrorReport): Diagnostic {
    const where = [...stackPositions(report.stack ?? ''), ...(report.source ? [{ url: report.source, line: report.line, column: report.column }] : [])];
    const inProject = where.map((p) => ({ ...p, path: urlPathOf(p.url) })).find((p) => p.path !== undefined && isProjectModulePath(p.path));
    const located = inProject ? this.locate(inProject.path!, inProject.line, inProject.column) : undefined;
    const message = this.hidePaths(report.message.trim() || 'unknown runtime error');
    const stack = report.stack ? this.hidePaths(withoutOrigins(report.stack)) : undefined;
    return clampDiagnostic({ kind: 'runtime', file: located?.file, line: located?.line, column: located?.column, message, frame: stack });
  }

  private changed(): void {
    const diagnostics = [...[...this.build.values()].map((entry) => entry.diagnostic), ...this.runtime].slice(0, DIAGNOSTIC_LIMITS.count);
    if (sameDiagnostics(diagnostics, this.state.diagnostics)) return;
    this.state = buildStateOf(diagnostics, this.now());
    for (const listener of this.listeners) listener(this.state);
  }
}

/** `/src/App.jsx?t=1` → `/src/App.jsx` (also for absolute files with a query). */
export function stripQuery(url: string): string {
  return url.replace(/[?#].*$/s, '');
}

/** The project file a root URL path of the page names (`/src/App.jsx` → `src/App.jsx`); undefined for Vite's own. */
export function projectFileOfUrl(urlPath: string): string | undefined {
  const path = stripQuery(urlPath);
  if (!isProjectModulePath(path)) return undefined;
  let decoded: string;
  try {
    decoded = decodeURIComponent(path.slice(1));
  } catch {
    return undefined;
  }
  return isProjectRelativePath(decoded) ? decoded : undefined;
}

/** `file:line:column` as a compiler message writes it (`╭─[ src/App.jsx:8:24 ]`, `src/App.css:3:2:`). */
function positionInMessage(message: string, file: string): [number | undefined, number | undefined] {
  const escaped = file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const match = new RegExp(`(?:^|[\\s\\[("'])${escaped}:(\\d+)(?::(\\d+))?`).exec(message);
  return match ? [Number(match[1]), match[2] === undefined ? undefined : Number(match[2])] : [undefined, undefined];
}

/** Positions in a browser's stack (`at f (http://h/src/App.jsx?t=1:12:5)`, `f@http://h/src/App.jsx:12:5`), top first. */
export function stackPositions(stack: string): { url: string; line: number; column: number }[] {
  return [...stack.matchAll(/(https?:\/\/[^\s()@]+?):(\d+):(\d+)/g)].map((m) => ({ url: m[1], line: Number(m[2]), column: Number(m[3]) }));
}

/** The path and query of a page URL (`http://h/src/App.jsx?t=1` → `/src/App.jsx?t=1`); root paths pass as they are. */
function urlPathOf(url: string): string | undefined {
  if (url.startsWith('/') && !url.startsWith('//')) return url;
  try {
    const parsed = new URL(url);
    return parsed.protocol === 'http:' || parsed.protocol === 'https:' ? parsed.pathname + parsed.search : undefined;
  } catch {
    return undefined;
  }
}

/** A stack with the page's origin taken out of each URL: paths only (the preview's URL is its capability). */
function withoutOrigins(stack: string): string {
  return stack.replace(/https?:\/\/[^/\s()]+(?=\/)/g, '');
}

/** A source map as Vite keeps it on a module's transform result. */
export interface SourceMapLike {
  mappings?: string;
}

/**
 * The position in the original file of a position in the served code (both
 * 1-based lines and columns), from the map's `mappings` (Base64 VLQ, source map
 * v3); undefined when the map says nothing of that line.
 */
export function originalPosition(map: SourceMapLike | null | undefined, line: number, column: number): { line: number; column: number } | undefined {
  const lines = map?.mappings?.split(';');
  if (!lines || line < 1 || line > lines.length) return undefined;
  // Source line and column are deltas across the whole map: every earlier line is decoded too.
  let sourceLine = 0;
  let sourceColumn = 0;
  let found: { line: number; column: number } | undefined;
  for (let i = 0; i < line; i++) {
    let generatedColumn = 0;
    for (const segment of lines[i] ? lines[i].split(',') : []) {
      const fields = decodeVlq(segment);
      generatedColumn += fields[0] ?? 0;
      if (fields.length < 4) continue;
      sourceLine += fields[2];
      sourceColumn += fields[3];
      if (i === line - 1 && generatedColumn <= column - 1) found = { line: sourceLine + 1, column: sourceColumn + 1 };
    }
  }
  return found;
}

const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

function decodeVlq(segment: string): number[] {
  const values: number[] = [];
  let value = 0;
  let shift = 0;
  for (const char of segment) {
    const digit = BASE64.indexOf(char);
    if (digit < 0) return values;
    value += (digit & 31) << shift;
    if (digit & 32) {
      shift += 5;
      continue;
    }
    values.push(value & 1 ? -(value >>> 1) : value >>> 1);
    value = 0;
    shift = 0;
  }
  return values;
}
