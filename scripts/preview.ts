import { parseArgs } from 'node:util';
import { loadDotEnv } from '@velocity/contracts';
import { ApiError, BadApiUrl, apiOf } from './cli/api';
import { COMMANDS, COMMON_OPTIONS, Shown, UsageError, commandHelp, generalHelp, type Context } from './cli/commands';

/**
 * The command-line client: start, stop, extend, list and follow previews.
 *
 *   npx velocity-preview <command> [options]
 *   npm run preview -- <command> [options]
 *
 * `help` (and no arguments) lists the commands; each has `--help`. Exit status:
 * 0 done (help asked for included); 1 failed, the reason as one line on stderr
 * (a JSON line on stdout with --json); 2 a wrong command line, with the usage on
 * stderr. A closed stdout (`| head -5`) ends it quietly with 0, Ctrl-C with 130.
 * The api's address and token come from the environment, as the services read
 * theirs (see cli/api.ts).
 */
const PROGRAM = 'velocity-preview';

/** Quiet ends: the reader of stdout went away (exit 0), or Ctrl-C / SIGTERM (130 / 143). Whatever is followed ends with the process. */
function endQuietlyOnClosedPipesAndSignals(): { onInterrupt: (fn: () => void) => void } {
  const hooks: Array<() => void> = [];
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED') process.exit(0);
    process.stderr.write(`${PROGRAM}: cannot write the output: ${err.message}\n`);
    process.exit(1);
  });
  // Nowhere left to say anything: errors on stderr are dropped.
  process.stderr.on('error', () => undefined);
  const onSignal = (code: number) => () => {
    for (const hook of hooks) {
      try {
        hook();
      } catch {
        // The process ends anyway.
      }
    }
    process.exit(code);
  };
  process.once('SIGINT', onSignal(130));
  process.once('SIGTERM', onSignal(143));
  return { onInterrupt: (fn) => void hooks.push(fn) };
}

function usageError(prefix: string, message: string, usage: string): number {
  process.stderr.write(`${prefix}: ${message}\n\n${usage}`);
  return 2;
}

async function main(argv: string[]): Promise<number> {
  // As the services read it: a variable already set wins.
  loadDotEnv();
  const signals = endQuietlyOnClosedPipesAndSignals();
  const out = (text: string) => void process.stdout.write(text);
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h') {
    out(generalHelp());
    return 0;
  }
  if (name === 'help') {
    if (rest.length === 0) out(generalHelp());
    else if (rest.length === 1 && Object.hasOwn(COMMANDS, rest[0])) out(commandHelp(rest[0]));
    else return usageError(PROGRAM, `no such command: ${rest.join(' ')}`, generalHelp());
    return 0;
  }
  if (!Object.hasOwn(COMMANDS, name)) {
    const hint = /^[0-9a-f]{8}-/i.test(name) ? ` (to start a preview of a project: ${PROGRAM} start ${name})` : name.startsWith('-') ? ' (the command comes first)' : '';
    return usageError(PROGRAM, `unknown command '${name}'${hint}`, generalHelp());
  }
  const command = COMMANDS[name];
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  let ctx: Context;
  try {
    const options = Object.fromEntries(
      Object.entries({ ...command.options, ...COMMON_OPTIONS }).map(([option, o]) => [option, { type: o.type, ...(o.short ? { short: o.short } : {}) }]),
    );
    ({ values, positionals } = parseArgs({ args: rest, allowPositionals: true, strict: true, options }));
    if (values.help) {
      out(commandHelp(name));
      return 0;
    }
    const [min, max] = command.positionals;
    const args = command.synopsis.split(' ').slice(1).join(' ');
    if (positionals.length < min) throw new UsageError(`expected ${args}`);
    if (positionals.length > max) throw new UsageError(max === 0 ? `takes no arguments, got: ${positionals.join(' ')}` : `expected ${args}, got: ${positionals.join(' ')}`);
    const json = values.json === true;
    ctx = { api: apiOf(values.api as string | undefined), out, json, tty: !json && process.stdout.isTTY === true, onInterrupt: signals.onInterrupt };
  } catch (err) {
    if (err instanceof UsageError || err instanceof BadApiUrl || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      return usageError(name, (err as Error).message, commandHelp(name));
    }
    // A bad setting in the environment (loadConfig names it).
    process.stderr.write(`${name}: ${(err as Error).message}\n`);
    return 1;
  }
  try {
    return await command.run(values, positionals, ctx);
  } catch (err) {
    if (err instanceof UsageError) return usageError(name, err.message, commandHelp(name));
    if (err instanceof Shown) return 1;
    const message = err instanceof Error ? err.message : String(err);
    if (ctx.json) {
      out(`${JSON.stringify(err instanceof ApiError ? { type: 'error', status: err.status, message: err.apiMessage, ...(err.field ? { field: err.field } : {}) } : { type: 'error', message })}\n`);
    } else {
      process.stderr.write(`${name}: ${message}\n`);
    }
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`${PROGRAM}: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
