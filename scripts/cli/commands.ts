import { DEMO_PROJECT_ID, isUuid, type SessionEvent } from '@velocity/contracts';
import { call, type Api } from './api';
import { followEvents } from './follow-events';
import { jsonProgress, logLines, plainProgress, ttyProgress } from './progress';

/**
 * The command-line client's commands: what each takes, its help, and what it
 * does. scripts/preview.ts parses the command line and runs one.
 */

/** A wrong command line: the reason, then the command's usage on stderr; exit 2. */
export class UsageError extends Error {}

/** A failure already shown (by the live display, or as a JSON event): exit 1 without saying it again. */
export class Shown extends Error {}

export interface Context {
  api: Api;
  /** Writes to stdout. */
  out: (text: string) => void;
  json: boolean;
  /** stdout is a terminal (and not --json): a live display. */
  tty: boolean;
  /** Runs before the process ends on Ctrl-C (a live display restores the cursor). */
  onInterrupt: (fn: () => void) => void;
}

interface Option {
  type: 'string' | 'boolean';
  short?: string;
  /** `<n>` in the help for a string option. */
  arg?: string;
  help: string;
}

export interface Command {
  /** `start [projectId]`: the name and its arguments, for the list of commands and the usage line. */
  synopsis: string;
  /** One line in the list of commands. */
  summary: string;
  /** What it does, in a few lines of its own help. */
  description: string;
  options: Record<string, Option>;
  /** Positional arguments: how many, at least and at most. */
  positionals: [min: number, max: number];
  run(values: Record<string, string | boolean | undefined>, positionals: string[], ctx: Context): Promise<number>;
}

/** Options every command takes (help takes none). */
export const COMMON_OPTIONS: Record<string, Option> = {
  api: { type: 'string', arg: '<url>', help: "the api's base URL (default: VP_API_URL, else PUBLIC_URL or http://API_HOST:API_PORT)" },
  help: { type: 'boolean', short: 'h', help: 'this text' },
};

const json: Option = { type: 'boolean', help: 'output for programs: JSON, one object per line (an error too: {"type":"error",…})' };

function sessionIdOf(positionals: string[]): string {
  const id = positionals[0];
  if (!isUuid(id)) throw new UsageError(`<sessionId> must be a session id (a uuid), got '${id}'`);
  return id;
}

/** A positive number of seconds (or minutes) from an option. */
function positive(values: Record<string, unknown>, name: string, fallback: number): number {
  const raw = values[name];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (typeof raw !== 'string' || raw.trim() === '' || !Number.isFinite(n) || n <= 0) throw new UsageError(`--${name} must be a positive number, got '${String(raw)}'`);
  return n;
}

/** The session as `GET /v1/sessions/:id` (and each item of `GET /v1/sessions`) answers it: the fields the client reads. */
interface SessionView {
  id: string;
  projectId: string;
  status: string;
  previewUrl: string | null;
  expiresAt: string | null;
  build: { state: string; at: number } | null;
}

/** The session's own failure: shown by the progress display already. */
class SessionFailed extends Error {}

const start: Command = {
  synopsis: 'start [projectId]',
  summary: 'start a preview (of the demo project when none is given), show its steps, print its URL',
  description:
    'Starts a preview of a project (the demo project when none is given), shows its steps as they\n' +
    'happen (a live display in a terminal, one line per finished step otherwise) and prints its URL.',
  options: {
    template: { type: 'string', arg: '<type>', help: 'create a new project from a template first (react, vue, svelte, vanilla-ts)' },
    name: { type: 'string', arg: '<name>', help: "the new project's name (with --template)" },
    tier: { type: 'string', arg: '<tier>', help: 'free (default) or pro' },
    json: { ...json, help: 'one JSON object per line: the project, the session, then every event' },
    timeout: { type: 'string', arg: '<s>', help: 'give up after this many seconds (default 120)' },
  },
  positionals: [0, 1],
  async run(values, positionals, ctx) {
    const projectId = positionals[0] ?? null;
    if (projectId && values.template) throw new UsageError('give a project id or --template, not both');
    if (values.name !== undefined && !values.template) throw new UsageError('--name names a new project: give --template too');
    const timeoutMs = positive(values, 'timeout', 120) * 1000;
    const progress = ctx.json ? jsonProgress(ctx.out) : ctx.tty ? ttyProgress(ctx.out) : plainProgress(ctx.out);
    ctx.onInterrupt(() => progress.close());
    try {
      let id = projectId ?? DEMO_PROJECT_ID;
      if (values.template) {
        const project = await call<{ id: string; name: string; templateType: string }>(ctx.api, 'POST', '/v1/projects', {
          name: (values.name as string | undefined) ?? `${values.template} project`,
          templateType: values.template,
        });
        progress.project(project);
        id = project.id;
      }
      const created = await call<{ sessionId: string }>(ctx.api, 'POST', '/v1/sessions', { projectId: id, ...(values.tier ? { tier: values.tier } : {}) });
      progress.session({ sessionId: created.sessionId, projectId: id });
      const last = await followEvents({ api: ctx.api, sessionId: created.sessionId, timeoutMs, onEvent: (event) => progress.event(event) });
      progress.close();
      if (last.type === 'ready') return 0;
      if (last.type === 'failed') throw new SessionFailed(`failed${last.step ? ` at ${last.step}` : ''}: ${last.reason}`);
      throw new SessionFailed(`the session ${last.type} before it was ready`);
    } catch (err) {
      if (ctx.tty && !(err instanceof SessionFailed)) progress.error((err as Error).message);
      progress.close();
      // The live display shows it, and so do the JSON lines (a `failed` event); plain lines say it on stderr.
      if (ctx.tty || (ctx.json && err instanceof SessionFailed)) throw new Shown((err as Error).message);
      throw err;
    }
  },
};

const stop: Command = {
  synopsis: 'stop <sessionId>',
  summary: 'end a session now',
  description:
    'Ends a session now (DELETE /v1/sessions/:id): an active one ends (`ending`, then `ended` on its\n' +
    'events), one still starting is cancelled.',
  options: { json: { ...json, help: "the api's answer as JSON ({ sessionId, status, stop })" } },
  positionals: [1, 1],
  async run(_values, positionals, ctx) {
    const id = sessionIdOf(positionals);
    const stopped = await call<{ sessionId: string; status: string; stop: 'cancelled' | 'ending' }>(ctx.api, 'DELETE', `/v1/sessions/${id}`);
    ctx.out(ctx.json ? `${JSON.stringify(stopped)}\n` : stopped.stop === 'cancelled' ? `session ${id} cancelled (it was not ready yet)\n` : `session ${id} is ending\n`);
    return 0;
  },
};

const extend: Command = {
  synopsis: 'extend <sessionId>',
  summary: 'keep a session longer (--minutes, default 5)',
  description: "Moves an active session's expiry later, up to its tier's maximum session length.",
  options: {
    minutes: { type: 'string', arg: '<n>', help: 'how much later (default 5)' },
    json: { ...json, help: "the api's answer as JSON ({ sessionId, status, expiresAt, maxUntil })" },
  },
  positionals: [1, 1],
  async run(values, positionals, ctx) {
    const id = sessionIdOf(positionals);
    const seconds = Math.round(positive(values, 'minutes', 5) * 60);
    if (seconds < 1) throw new UsageError(`--minutes must be at least one second, got '${values.minutes}'`);
    const extended = await call<{ sessionId: string; expiresAt: string; maxUntil: string }>(ctx.api, 'POST', `/v1/sessions/${id}/extend`, { seconds });
    ctx.out(ctx.json ? `${JSON.stringify(extended)}\n` : `session ${id} expires at ${extended.expiresAt} (its tier allows until ${extended.maxUntil})\n`);
    return 0;
  },
};

const LIST_COLUMNS: Array<[title: string, value: (s: SessionView) => string]> = [
  ['ID', (s) => s.id],
  ['PROJECT', (s) => s.projectId],
  ['STATUS', (s) => s.status],
  ['PREVIEW URL', (s) => s.previewUrl ?? '-'],
  // An ended or failed session's expiry no longer means anything.
  ['EXPIRES', (s) => (s.status === 'ended' || s.status === 'error' ? '-' : (s.expiresAt ?? '-'))],
];

const list: Command = {
  synopsis: 'list',
  summary: 'your live sessions, newest first (--all: ended and failed ones too)',
  description: 'Lists your sessions, newest first: id, project, status, preview URL and expiry.',
  options: {
    all: { type: 'boolean', help: 'ended and failed sessions too (default: live ones only)' },
    limit: { type: 'string', arg: '<n>', help: 'at most this many (default 20)' },
    cursor: { type: 'string', arg: '<cursor>', help: 'continue after an earlier list (its nextCursor)' },
    json: { ...json, help: '{ "sessions": [...], "nextCursor": … } as the api answers it (nextCursor: null when that was all)' },
  },
  positionals: [0, 0],
  async run(values, _positionals, ctx) {
    const limit = positive(values, 'limit', 20);
    if (!Number.isInteger(limit)) throw new UsageError(`--limit must be a whole number, got '${values.limit}'`);
    const status = values.all ? 'all' : 'live';
    const sessions: SessionView[] = [];
    let cursor = (values.cursor as string | undefined) ?? null;
    do {
      const query = new URLSearchParams({ status, limit: String(Math.min(100, limit - sessions.length)), ...(cursor ? { cursor } : {}) });
      const page = await call<{ sessions: SessionView[]; nextCursor: string | null }>(ctx.api, 'GET', `/v1/sessions?${query}`);
      sessions.push(...page.sessions);
      cursor = page.nextCursor;
    } while (cursor && sessions.length < limit);
    if (ctx.json) {
      ctx.out(`${JSON.stringify({ sessions, nextCursor: cursor })}\n`);
      return 0;
    }
    if (sessions.length === 0) {
      ctx.out(values.all ? 'no sessions\n' : 'no live sessions (list --all shows ended and failed ones too)\n');
      return 0;
    }
    const rows = [LIST_COLUMNS.map(([title]) => title), ...sessions.map((s) => LIST_COLUMNS.map(([, value]) => value(s)))];
    const widths = LIST_COLUMNS.map((_, i) => Math.max(...rows.map((row) => row[i].length)));
    ctx.out(rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]))).join('  ')).join('\n') + '\n');
    if (cursor) ctx.out(`more: velocity-preview list${values.all ? ' --all' : ''} --cursor ${cursor}\n`);
    return 0;
  },
};

const logs: Command = {
  synopsis: 'logs <sessionId>',
  summary: "a session's events so far (--follow: then every new one until it ends)",
  description:
    "Prints a session's events (GET /v1/sessions/:id/events), one line each with its time (UTC):\n" +
    'its steps, ready or failed, build changes, its end. Without --follow it prints what has happened\n' +
    '(waiting for a session still starting to be ready or fail) and exits.',
  options: {
    follow: { type: 'boolean', short: 'f', help: 'then keep printing new events until the session ends (resumes a dropped connection)' },
    json: { ...json, help: 'every event as one JSON object per line' },
    timeout: { type: 'string', arg: '<s>', help: 'without --follow: give up waiting for a starting session after this many seconds (default 120)' },
  },
  positionals: [1, 1],
  async run(values, positionals, ctx) {
    const id = sessionIdOf(positionals);
    const timeoutMs = positive(values, 'timeout', 120) * 1000;
    // Its state now says when what has happened is all printed (and a 404 comes as one clear line).
    const view = await call<SessionView>(ctx.api, 'GET', `/v1/sessions/${id}`);
    await followEvents({
      api: ctx.api,
      sessionId: id,
      timeoutMs: values.follow ? undefined : timeoutMs,
      // Following: until the session is over (failed, ended), which followEvents always stops at.
      until: values.follow ? () => false : caughtUp(view),
      onEvent: (event) => ctx.out(ctx.json ? `${JSON.stringify(event)}\n` : logLines(event)),
    });
    return 0;
  },
};

/**
 * When the events read so far say all that had happened when the session was
 * read: for a session that is over or ending, its end (the api closes the
 * stream after it); else once it is settled (`ready`), and has reached the
 * build state the session reported (`build.at` is the time of the newest
 * `ready` or `diagnostics` event: the api reads it from the same stream).
 */
export function caughtUp(view: Pick<SessionView, 'status' | 'build'>): (event: SessionEvent) => boolean {
  if (view.status === 'ending' || view.status === 'ended' || view.status === 'error') return () => false;
  const buildAt = view.build?.at;
  let ready = false;
  return (event) => {
    if (event.type === 'ready') ready = true;
    if (!ready) return false;
    return buildAt === undefined || ((event.type === 'ready' || event.type === 'diagnostics') && event.at >= buildAt);
  };
}

export const COMMANDS: Record<string, Command> = { start, stop, extend, list, logs };

const PROGRAM = 'velocity-preview';

/** The text of `help` (and of no arguments): every command, one line each. */
export function generalHelp(): string {
  const entries: Array<[string, string]> = [...Object.values(COMMANDS).map((c): [string, string] => [c.synopsis, c.summary]), ['help [command]', "this text, or a command's (also: <command> --help)"]];
  const width = Math.max(...entries.map(([synopsis]) => synopsis.length));
  return `Usage: ${PROGRAM} <command> [options]
       npm run preview -- <command> [options]

Live previews of projects: start one, follow it, keep it longer, stop it.

Commands:
${entries.map(([synopsis, summary]) => `  ${synopsis.padEnd(width)}  ${summary}`).join('\n')}

Every command takes --api <url> (default: VP_API_URL, else PUBLIC_URL or
http://API_HOST:API_PORT), --json (output for programs) and -h, --help.
Environment: VP_TOKEN, a Supabase access token, sent as "Authorization: Bearer" when set.
Exit status: 0 done, 1 failed (the reason on stderr, or as a JSON line with --json), 2 wrong usage.
`;
}

/** A command's own help: its usage, what it does, its options. */
export function commandHelp(name: string): string {
  const command = COMMANDS[name];
  const options = { ...command.options, ...COMMON_OPTIONS };
  const flags = Object.entries(options).map(([option, o]): [string, string] => [`${o.short ? `-${o.short}, ` : ''}--${option}${o.arg ? ` ${o.arg}` : ''}`, o.help]);
  const width = Math.max(...flags.map(([flag]) => flag.length));
  return `Usage: ${PROGRAM} ${command.synopsis} [options]

${command.description}

Options:
${flags.map(([flag, help]) => `  ${flag.padEnd(width)}  ${help}`).join('\n')}
`;
}
