import { PROVISION_STEPS, type Diagnostic, type SessionEvent } from '@velocity/contracts';

/**
 * How the command-line client shows a session starting. Three forms:
 * - `tty`: a live display, one line per step with a spinner and its elapsed time,
 *   and a bar under them, redrawn in place;
 * - `plain` (output is not a terminal): one line per finished step, as it arrives;
 * - `json`: every event as one JSON object per line, for programs.
 */
export interface Progress {
  session(info: { sessionId: string; projectId: string }): void;
  project(project: { id: string; name: string; templateType: string }): void;
  event(event: SessionEvent): void;
  /** A failure that is not a session event (an HTTP error, a lost stream). */
  error(message: string, status?: number): void;
  /** Stops any redrawing; the display stays as it is. */
  close(): void;
}

type Write = (text: string) => void;

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const BAR_WIDTH = 24;

const seconds = (ms: number) => `${(ms / 1000).toFixed(2)}s`;

export function jsonProgress(out: Write): Progress {
  const line = (value: unknown) => out(`${JSON.stringify(value)}\n`);
  return {
    project: (project) => line({ type: 'project', project }),
    session: (info) => line({ type: 'session', ...info }),
    event: (event) => line(event),
    error: (message, status) => line({ type: 'error', message, ...(status ? { status } : {}) }),
    close: () => undefined,
  };
}

export function plainProgress(out: Write, now: () => number = Date.now): Progress {
  const started = now();
  const at = () => seconds(now() - started).padStart(7);
  return {
    project: (project) => out(`project ${project.id} created from the ${project.templateType} template\n`),
    session: ({ sessionId, projectId }) => out(`session ${sessionId} queued (project ${projectId})\n`),
    event: (event) => {
      if (event.type === 'progress' && event.state === 'done') out(`${at()}  ✓ ${event.step} (${Math.round(event.ms ?? 0)} ms${installed(event)})\n`);
      else if (event.type === 'ready') out(`${at()}  ready: ${event.previewUrl}\n${' '.repeat(9)}expires ${event.expiresAt}\n${buildLines(event.diagnostics).map((l) => `${' '.repeat(9)}${l}\n`).join('')}`);
      else if (event.type === 'failed') out(`${at()}  ✗ ${event.step ?? 'failed'}: ${event.reason}\n`);
      else if (event.type === 'ending' || event.type === 'ended') out(`${at()}  ${event.type}: ${event.reason}\n`);
    },
    error: () => undefined,
    close: () => undefined,
  };
}

interface StepState {
  state: 'pending' | 'started' | 'done' | 'failed';
  /** An install's packages and bytes so far, or in all. */
  detail?: string;
  startedAt?: number;
  ms?: number;
  attempt?: number;
}

/** The live display for a terminal: redrawn in place every `frameMs`. */
export function ttyProgress(out: Write, now: () => number = Date.now, frameMs = 80): Progress {
  const started = now();
  const steps = new Map<string, StepState>(PROVISION_STEPS.map((step) => [step, { state: 'pending' }]));
  let header = 'asking for a preview…';
  let footer: string[] = [];
  let drawn = 0;
  let frame = 0;
  let timer: NodeJS.Timeout | null = null;
  let finished = false;
  /** When the session reached its end: the clock of the display stops there. */
  let endedAt: number | null = null;
  const clock = () => endedAt ?? now();

  const render = () => {
    const lines = [header];
    for (const [step, s] of steps) {
      const elapsed =
        s.state === 'done' ? `${Math.round(s.ms ?? 0)} ms` : s.state === 'started' ? seconds(now() - (s.startedAt ?? now())) : s.state === 'failed' ? 'failed' : '';
      const icon = s.state === 'done' ? '\x1b[32m✓\x1b[0m' : s.state === 'failed' ? '\x1b[31m✗\x1b[0m' : s.state === 'started' ? `\x1b[36m${SPINNER[frame % SPINNER.length]}\x1b[0m` : '\x1b[2m·\x1b[0m';
      const retry = s.attempt && s.attempt > 1 && s.state === 'started' ? ` (attempt ${s.attempt})` : '';
      lines.push(`  ${icon} ${step.padEnd(20)} ${elapsed}${retry}${s.detail ?? ''}`);
    }
    const done = [...steps.values()].filter((s) => s.state === 'done').length;
    const filled = Math.round((done / steps.size) * BAR_WIDTH);
    lines.push(`  [${'█'.repeat(filled)}${'░'.repeat(BAR_WIDTH - filled)}] ${done}/${steps.size}  ${seconds(clock() - started)}`);
    lines.push(...footer);
    // Back to the top of the last drawing, then each line cleared and written again.
    let text = drawn > 0 ? `\x1b[${drawn}A\r` : '';
    for (const line of lines) text += `\x1b[2K${line}\n`;
    out(text);
    drawn = lines.length;
  };

  const tick = () => {
    frame++;
    render();
  };

  const stop = () => {
    if (timer) clearInterval(timer);
    timer = null;
    if (!finished) {
      finished = true;
      render();
      out('\x1b[?25h');
    }
  };

  out('\x1b[?25l');
  timer = setInterval(tick, frameMs);
  timer.unref();
  render();

  return {
    project: (project) => {
      footer = [];
      header = `project ${project.id} created from the ${project.templateType} template`;
      render();
    },
    session: ({ sessionId, projectId }) => {
      header = `session ${sessionId} · project ${projectId}`;
      render();
    },
    event: (event) => {
      if (event.type === 'progress') {
        const s = steps.get(event.step) ?? { state: 'pending' };
        if (event.state === 'started') Object.assign(s, { state: 'started', startedAt: now(), attempt: event.attempt });
        else if (event.state === 'running') Object.assign(s, { detail: installed(event) });
        else Object.assign(s, { state: 'done', ms: event.ms, detail: installed(event) });
        steps.set(event.step, s);
      } else if (event.type === 'ready') {
        endedAt = now();
        footer = [`\x1b[32mready\x1b[0m in ${seconds(endedAt - started)}: ${event.previewUrl}`, `expires ${new Date(event.expiresAt).toLocaleTimeString()}`, ...buildLines(event.diagnostics)];
        stop();
        return;
      } else if (event.type === 'failed') {
        endedAt = now();
        if (event.step) steps.set(event.step, { ...(steps.get(event.step) ?? {}), state: 'failed' });
        footer = [`\x1b[31mfailed\x1b[0m${event.step ? ` at ${event.step}` : ''}: ${event.reason}`];
        stop();
        return;
      } else if (event.type === 'ended' || event.type === 'ending') {
        footer = [`${event.type}: ${event.reason}`];
      }
      render();
    },
    error: (message) => {
      footer = [`\x1b[31merror\x1b[0m: ${message}`];
      stop();
    },
    close: stop,
  };
}

/** `, 120 packages, 31.2 MB (cached)` for an install's progress; '' for other steps. */
export function installed(event: { packages?: number; bytes?: number; cached?: boolean }): string {
  if (event.packages === undefined) return '';
  const mb = event.bytes === undefined ? '' : `, ${(event.bytes / 1e6).toFixed(1)} MB`;
  return `, ${event.packages} packages${mb}${event.cached ? ' (cached)' : ''}`;
}

/** What `ready` says of the build: nothing when it compiled, else a count and one line per diagnostic (`src/App.jsx:8:24 message`). */
export function buildLines(diagnostics: Diagnostic[] | undefined): string[] {
  if (!diagnostics?.length) return [];
  const where = (d: Diagnostic) => (d.file ? `${d.file}${d.line ? `:${d.line}${d.column ? `:${d.column}` : ''}` : ''} ` : '');
  return [`build: ${diagnostics.length} error${diagnostics.length === 1 ? '' : 's'} (the preview runs; fix and it updates)`, ...diagnostics.map((d) => `  ✗ ${where(d)}${d.message.split('\n', 1)[0]}`)];
}

/**
 * One event as `logs` prints it: the time it happened (UTC), then what it says;
 * `ready` and `diagnostics` add a line per build error under it.
 */
export function logLines(event: SessionEvent): string {
  const at = new Date(event.at).toISOString();
  const indent = (lines: string[]) => lines.map((line) => `${' '.repeat(at.length + 2)}${line}\n`).join('');
  switch (event.type) {
    case 'queued':
      return `${at}  queued\n`;
    case 'progress': {
      const attempt = event.attempt > 1 ? ` (attempt ${event.attempt})` : '';
      if (event.state === 'started') return `${at}  ${event.step} started${attempt}\n`;
      if (event.state === 'running') return `${at}  ${event.step} running${installed(event)}\n`;
      return `${at}  ✓ ${event.step} (${Math.round(event.ms ?? 0)} ms${installed(event)})${attempt}\n`;
    }
    case 'ready':
      return `${at}  ready: ${event.previewUrl} (expires ${event.expiresAt}${event.pooled ? ', warm pool' : ''})\n${indent(buildLines(event.diagnostics))}`;
    case 'failed':
      return `${at}  ✗ failed${event.step ? ` at ${event.step}` : ''}: ${event.reason}${event.retryable ? ' (retryable)' : ''}\n`;
    case 'diagnostics':
      return event.diagnostics.length === 0 ? `${at}  build: ok\n` : `${at}  ${buildLines(event.diagnostics)[0]}\n${indent(buildLines(event.diagnostics).slice(1))}`;
    case 'ending':
    case 'ended':
      return `${at}  ${event.type}: ${event.reason}\n`;
  }
}
