import { parseArgs } from 'node:util';
import { DEMO_PROJECT_ID, loadConfig, publicUrl } from '@velocity/shared';
import { HttpError, followEvents, messageOf } from './cli/follow-events';
import { jsonProgress, plainProgress, ttyProgress, type Progress } from './cli/progress';

/**
 * The command-line client: starts a preview, shows its steps as they stream in,
 * prints the URL.
 *
 *   npm run preview -- [projectId] [--api <url>] [--template <type>] [--json]
 *   npx velocity-preview start [projectId] [same options]
 *
 * Exit status: 0 once the preview is ready; 1 when it failed (the reason on
 * stderr, or as a JSON line with --json); 2 for a wrong command line.
 * VP_TOKEN, when set, is sent as the bearer token (not needed while auth is off).
 */
const USAGE = `Usage: velocity-preview start [projectId] [options]
       npm run preview -- [projectId] [options]

Starts a preview of a project (the demo project when none is given), shows its
steps as they happen and prints its URL.

Options:
  --api <url>         the api's base URL (default: VP_API_URL, else PUBLIC_URL or http://API_HOST:API_PORT)
  --template <type>   create a new project from a template first (react, vue, svelte, vanilla-ts)
  --name <name>       the new project's name (with --template)
  --tier <tier>       free (default) or pro
  --json              one JSON object per line: the project, the session, then every event
  --timeout <s>       give up after this many seconds (default 120)
  -h, --help          this text

Environment: VP_TOKEN, a Supabase access token, sent as "Authorization: Bearer" when set.
Exit status: 0 ready, 1 failed (with the reason), 2 wrong usage.`;

class UsageError extends Error {}

interface Options {
  api: string;
  projectId: string | null;
  template: string | null;
  name: string | null;
  tier: string | null;
  json: boolean;
  timeoutMs: number;
}

function parse(argv: string[]): Options | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        api: { type: 'string' },
        template: { type: 'string' },
        name: { type: 'string' },
        tier: { type: 'string' },
        json: { type: 'boolean', default: false },
        timeout: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return 'help';
  const words = [...positionals];
  // `velocity-preview start <projectId>`: the verb is optional for `npm run preview`.
  if (words[0] === 'start') words.shift();
  if (words.length > 1) throw new UsageError(`expected at most one project id, got: ${words.join(' ')}`);
  const projectId = words[0] ?? null;
  if (projectId && values.template) throw new UsageError('give a project id or --template, not both');
  const timeout = values.timeout === undefined ? 120 : Number(values.timeout);
  if (!Number.isFinite(timeout) || timeout <= 0) throw new UsageError(`--timeout must be a positive number of seconds, got ${values.timeout}`);
  const api = (values.api ?? process.env.VP_API_URL ?? publicUrl(loadConfig())).replace(/\/+$/, '');
  try {
    new URL(api);
  } catch {
    throw new UsageError(`--api must be a URL, got ${api}`);
  }
  return {
    api,
    projectId,
    template: values.template ?? null,
    name: values.name ?? null,
    tier: values.tier ?? null,
    json: values.json ?? false,
    timeoutMs: timeout * 1000,
  };
}

async function post(url: string, headers: Record<string, string>, body: unknown): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(url, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new Error(`cannot reach the api at ${new URL(url).origin} (${cause?.code ?? cause?.message ?? (err as Error).message}); is it running? (npm start)`);
  }
  if (!res.ok) throw new HttpError(res.status, `POST ${new URL(url).pathname} answered ${res.status}: ${await messageOf(res)}`);
  return res.json();
}

async function run(options: Options, progress: Progress): Promise<number> {
  const headers: Record<string, string> = process.env.VP_TOKEN ? { authorization: `Bearer ${process.env.VP_TOKEN}` } : {};
  let projectId = options.projectId ?? DEMO_PROJECT_ID;
  if (options.template) {
    const project = (await post(`${options.api}/v1/projects`, headers, {
      name: options.name ?? `${options.template} project`,
      templateType: options.template,
    })) as { id: string; name: string; templateType: string };
    progress.project(project);
    projectId = project.id;
  }
  const created = (await post(`${options.api}/v1/sessions`, headers, { projectId, ...(options.tier ? { tier: options.tier } : {}) })) as { sessionId: string };
  progress.session({ sessionId: created.sessionId, projectId });
  const last = await followEvents({
    baseUrl: options.api,
    sessionId: created.sessionId,
    headers,
    timeoutMs: options.timeoutMs,
    onEvent: (event) => progress.event(event),
  });
  progress.close();
  if (last.type === 'ready') return 0;
  if (last.type === 'failed') throw new SessionFailed(`failed${last.step ? ` at ${last.step}` : ''}: ${last.reason}`);
  throw new SessionFailed(`the session ${last.type} before it was ready`);
}

/** The session's own failure: already shown by the progress display. */
class SessionFailed extends Error {}

async function main(): Promise<number> {
  let options: Options | 'help';
  try {
    options = parse(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`preview: ${err.message}\n\n${USAGE}\n`);
    return 2;
  }
  if (options === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const out = (text: string) => void process.stdout.write(text);
  const tty = !options.json && process.stdout.isTTY === true;
  const progress = options.json ? jsonProgress(out) : tty ? ttyProgress(out) : plainProgress(out);
  const onSignal = () => {
    progress.close();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  try {
    return await run(options, progress);
  } catch (err) {
    const message = (err as Error).message;
    if (!(err instanceof SessionFailed)) progress.error(message, err instanceof HttpError ? err.status : undefined);
    progress.close();
    // The reason on stderr too, unless the live display or the JSON lines already carry it.
    if (!tty && !options.json) process.stderr.write(`preview: ${message}\n`);
    return 1;
  } finally {
    process.removeListener('SIGINT', onSignal);
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`preview: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
