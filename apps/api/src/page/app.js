// The preview page: pick a project (yours, the demo one, or a new one from a
// template), press Preview, watch the steps arrive over SSE, then use the preview
// in the frame with its build errors beside it; extend or stop it.
//
// One live session per page: Preview while one is live stops it first
// (DELETE /v1/sessions/:id), then starts the new one. When a session ends
// (stopped, expired, idle, failed) the frame is removed and the page says why.

import { ApiError, call, getToken, setToken } from './api.js';
import { followEvents } from './events.js';

const $ = (id) => document.getElementById(id);
const EXTEND_SECONDS = 300;
/** Projects asked for per page of GET /v1/projects. */
const PAGE_SIZE = 20;
/** Earlier versions kept the projects made in this browser here; the api lists them now. */
const OLD_CREATED_KEY = 'velocity-preview.created-projects';

let config = { demoProjectId: '', templates: [], steps: [] };
/**
 * The session on screen:
 * { id, stream, t0, status, previewUrl, expiresAt, poll, stopping, over }.
 * `over`: it ended or failed (or the page stopped it to start another); nothing of it is live.
 */
let session = null;
/** Whether the user chose in the project list (else the demo project stays selected as the list fills). */
let picked = false;
/** The user's projects listed so far, and the cursor of the next page (null: no more). */
let projects = [];
let nextCursor = null;
/** Each list load, so that an older answer never overwrites a newer one. */
let listing = 0;
let starting = false;

init().catch((err) => showError(err.message));

async function init() {
  localStorage.removeItem(OLD_CREATED_KEY);
  config = await call('GET', '/ui/config.json');
  $('token').value = getToken();
  $('token').addEventListener('change', () => {
    setToken($('token').value.trim());
    void loadProjects();
  });
  $('demo-list').replaceChildren(option(config.demoProjectId, 'Demo project (react)'));
  $('template-list').replaceChildren(...config.templates.map((template) => option(`template:${template}`, `New ${template} project`)));
  $('project').value = config.demoProjectId;
  $('project').addEventListener('change', () => (picked = true));
  $('more-projects').addEventListener('click', () => void loadProjects({ more: true }));
  $('start-form').addEventListener('submit', (e) => {
    e.preventDefault();
    void startPreview();
  });
  $('stop').addEventListener('click', () => void stopSession());
  $('extend').addEventListener('click', () => void extendSession());
  setInterval(renderExpiry, 1000);
  await loadProjects();
}

function option(value, text) {
  const el = document.createElement('option');
  el.value = value;
  el.textContent = text;
  return el;
}

// --- the project list ---

/**
 * The user's projects from GET /v1/projects, most recently updated first: the
 * first page, or (`more`) the next one appended. `select` is selected after.
 */
async function loadProjects({ more = false, select } = {}) {
  const load = ++listing;
  const note = $('projects-note');
  const button = $('more-projects');
  button.disabled = true;
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (more && nextCursor) query.set('cursor', nextCursor);
  try {
    const page = await call('GET', `/v1/projects?${query}`);
    if (load !== listing) return;
    const items = (Array.isArray(page?.projects) ? page.projects : []).filter((p) => p && p.id && p.id !== config.demoProjectId);
    const seen = new Set(more ? projects.map((p) => p.id) : []);
    projects = [...(more ? projects : []), ...items.filter((p) => !seen.has(p.id) && seen.add(p.id))];
    nextCursor = typeof page?.nextCursor === 'string' && page.nextCursor ? page.nextCursor : null;
    note.textContent = projects.length === 0 ? 'You have no projects yet: pick a template to make one.' : '';
  } catch (err) {
    if (load !== listing) return;
    if (!more) {
      projects = [];
      nextCursor = null;
    }
    note.textContent = `Could not list your projects: ${err.message}`;
  }
  const current = select ?? $('project').value;
  $('project-list').replaceChildren(
    ...projects.map((p) => option(p.id, `${p.name}${p.templateType ? ` (${p.templateType})` : ''} · ${p.id.slice(0, 8)}`)),
  );
  $('project').value = [...$('project').options].some((o) => o.value === current) ? current : config.demoProjectId;
  button.hidden = !nextCursor;
  button.disabled = false;
}

// --- starting ---

async function startPreview() {
  if (starting) return;
  starting = true;
  clearError();
  const button = $('preview');
  button.disabled = true;
  try {
    // One live session per page: the one on screen is stopped before another starts.
    if (session && !session.over) {
      const previous = session.id;
      if (!(await stopSession({ replacing: true }))) return;
      say(`Stopped session ${previous.slice(0, 8)} to start a new one.`);
    }
    let projectId = $('project-id').value.trim();
    if (!projectId) {
      const choice = $('project').value;
      if (choice.startsWith('template:')) {
        const templateType = choice.slice('template:'.length);
        const name = `${templateType} project ${new Date().toLocaleTimeString()}`;
        const project = await call('POST', '/v1/projects', { name, templateType });
        picked = true;
        await loadProjects({ select: project.id });
        projectId = project.id;
      } else {
        projectId = choice;
      }
    }
    const created = await call('POST', '/v1/sessions', { projectId });
    showSession(created.sessionId);
    const sessionId = created.sessionId;
    session.stream = followEvents(created.eventsUrl ?? `/v1/sessions/${sessionId}/events`, {
      onEvent: (event) => onEvent(sessionId, event),
      onError: (message) => streamLost(sessionId, message),
    });
  } catch (err) {
    showError(err.message);
  } finally {
    starting = false;
    button.disabled = false;
  }
}

function showSession(sessionId) {
  session = { id: sessionId, stream: null, t0: null, status: 'queued', previewUrl: null, expiresAt: null, poll: null, stopping: false, over: false };
  $('session').hidden = false;
  $('session-id').textContent = sessionId;
  $('ready').hidden = true;
  $('ended').hidden = true;
  removeFrame();
  renderBuild(null);
  setStatus('queued');
  say('Queued: waiting for a provisioner.');
  $('stop').disabled = false; // a session being provisioned can be stopped too (it is cancelled)
  $('extend').disabled = true;
  $('steps').replaceChildren(...config.steps.map((step) => stepItem(step, false)));
}

// --- events ---

/** ` · 120 packages, 31.2 MB (cached)` for an install's progress; '' for other steps. */
function installed(event) {
  if (event.packages === undefined) return '';
  const mb = event.bytes === undefined ? '' : `, ${(event.bytes / 1e6).toFixed(1)} MB`;
  return ` · ${event.packages} packages${mb}${event.cached ? ' (cached)' : ''}`;
}

function onEvent(sessionId, event) {
  if (!session || session.id !== sessionId || session.over) return;
  session.t0 ??= event.at;
  const since = `+${((event.at - session.t0) / 1000).toFixed(2)}s`;
  switch (event.type) {
    case 'queued':
      break;
    case 'progress': {
      if (!session.stopping) setStatus(event.step === 'create-machine' || event.step === 'verify-url' || event.step === 'activate' ? 'starting' : 'creating');
      const li = stepItem(event.step);
      li.dataset.state = event.state === 'running' ? 'started' : event.state;
      li.querySelector('.time').textContent =
        event.state === 'done'
          ? `${Math.round(event.ms ?? 0)} ms${installed(event)} · ${since}`
          : event.state === 'running'
            ? `${installed(event).slice(3)} so far`
            : `started ${since}${event.attempt > 1 ? ` (attempt ${event.attempt})` : ''}`;
      if (event.state === 'started' && !session.stopping) say(`Starting: ${event.step}…`);
      break;
    }
    case 'ready':
      session.previewUrl = event.previewUrl;
      setExpiry(event.expiresAt);
      if (session.stopping) break; // stopped as it became ready: its `ended` follows
      setStatus('active');
      $('preview-url').href = event.previewUrl;
      $('preview-url').textContent = event.previewUrl;
      $('ready').hidden = false;
      showFrame(event.previewUrl);
      $('extend').disabled = false;
      say(`Ready: the preview is live${event.pooled ? ' (from the warm pool)' : ''}.`);
      if (Array.isArray(event.diagnostics)) renderBuild({ state: event.diagnostics.length ? 'errors' : 'ok', diagnostics: event.diagnostics });
      else void refresh(sessionId); // an api that puts no diagnostics on ready: the row has the build state
      break;
    case 'diagnostics':
      renderBuild(event);
      break;
    case 'failed': {
      if (event.step) {
        const li = stepItem(event.step);
        li.dataset.state = 'failed';
        li.querySelector('.time').textContent = `failed ${since}`;
      }
      onFailed(event.step, event.reason, event.retryable);
      break;
    }
    case 'ending':
      setStatus('ending');
      removeFrame();
      $('stop').disabled = true;
      $('extend').disabled = true;
      say(`Ending: ${endedBecause(event.reason)}`);
      break;
    case 'ended':
      onOver('ended', 'Preview ended', endedBecause(event.reason));
      break;
  }
}

/** Why a session ended, in words, from the reason its `ending`/`ended` events carry. */
function endedBecause(reason) {
  switch (reason) {
    case 'stopped':
      return 'It was stopped.';
    case 'expired':
      return 'It reached its expiry time.';
    case 'idle':
      return 'It was idle too long (nothing used it), so it was stopped.';
    case 'ended':
    case undefined:
    case '':
      return 'It has ended.';
    default:
      return `It ended: ${reason}.`;
  }
}

/** It failed, or (stopped while it was being provisioned) was cancelled. */
function onFailed(step, reason, retryable) {
  if (session?.stopping && /^cancelled/.test(reason)) onOver('cancelled', 'Preview stopped', 'It was stopped before it was ready.');
  else onOver('error', 'Preview failed', `${failure(step, reason)}${retryable ? ' (temporary: try again)' : ''}`);
}

/** `Step verify-url failed: <reason>` (a reason that starts with its step's name loses it), or the reason alone. */
function failure(step, reason) {
  if (!step) return reason;
  const own = reason.startsWith(`${step}: `) ? reason.slice(step.length + 2) : reason;
  return `Step ${step} failed: ${own}`;
}

function stepItem(step, find = true) {
  let li = find ? $('steps').querySelector(`li[data-step="${CSS.escape(step)}"]`) : null;
  if (!li) {
    li = document.createElement('li');
    li.dataset.step = step;
    li.dataset.state = 'pending';
    li.innerHTML = '<span class="icon" aria-hidden="true"></span><span class="name"></span><span class="time"></span>';
    li.querySelector('.name').textContent = step;
    if (find) $('steps').append(li);
  }
  return li;
}

/** The events stream could not be read any more: say so, and follow the session's row instead. */
function streamLost(sessionId, message) {
  if (!session || session.id !== sessionId || session.over) return;
  showError(`${message}; following the session's state instead`);
  clearInterval(session.poll);
  session.poll = setInterval(() => void refresh(sessionId), session.stopping ? 1000 : 5000);
}

// --- stop, extend, the row ---

/**
 * Stops the live session (DELETE /v1/sessions/:id). Its `ended` (or, when it was
 * still provisioning, `failed` "cancelled") then arrives on its events. With
 * `replacing`, the page lets it go at once (another takes its place). Resolves
 * to false when it could not be stopped (the error is shown; it stays live).
 */
async function stopSession({ replacing = false } = {}) {
  const current = session;
  if (!current || current.over) return true;
  if (current.stopping) {
    // Its stop was accepted already: being replaced, it is let go without asking again.
    if (replacing) letGo(current);
    return true;
  }
  const before = current.status;
  current.stopping = true;
  $('stop').disabled = true;
  $('extend').disabled = true;
  // The preview is gone from the page at once: nothing of it runs on while its machine stops.
  removeFrame();
  setStatus('ending');
  say('Stopping…');
  try {
    await call('DELETE', `/v1/sessions/${current.id}`);
  } catch (err) {
    // 409: it had already ended or failed on its own; its events say how.
    if (!(err instanceof ApiError && err.status === 409)) {
      current.stopping = false;
      showError(`Could not stop session ${current.id}: ${err.message}`);
      if (session === current && !current.over) {
        setStatus(before);
        say('');
        $('stop').disabled = false;
        if (before === 'active' && current.previewUrl) {
          showFrame(current.previewUrl);
          $('extend').disabled = false;
        }
      }
      return false;
    }
  }
  if (replacing) letGo(current);
  return true;
}

/** Lets a stopped session go without waiting for its end: another takes its place. */
function letGo(current) {
  if (session === current) onOver('ended', 'Preview ended', 'It was stopped to start a new one.');
  current.over = true;
  current.stream?.close();
  clearInterval(current.poll);
}

async function extendSession() {
  if (!session || session.over) return;
  $('extend').disabled = true;
  try {
    const extended = await call('POST', `/v1/sessions/${session.id}/extend`, { seconds: EXTEND_SECONDS });
    setExpiry(extended.expiresAt);
    clearError();
  } catch (err) {
    showError(err.message);
  } finally {
    if (session && !session.over && !session.stopping && session.status === 'active') $('extend').disabled = false;
  }
}

/** Reads the row (GET /v1/sessions/:id): its build state, expiry and end, for when the events cannot say. */
async function refresh(sessionId) {
  try {
    const row = await call('GET', `/v1/sessions/${sessionId}`);
    if (!session || session.id !== sessionId || session.over) return;
    if (row.expiresAt) setExpiry(row.expiresAt);
    if (row.build) renderBuild(row.build);
    if (row.status === 'ended') onOver('ended', 'Preview ended', endedBecause(session.stopping ? 'stopped' : 'ended'));
    else if (row.status === 'error') {
      onFailed(row.errorStep, row.errorMessage ?? 'unknown error', false);
    }
  } catch (err) {
    if (session && session.id === sessionId && !session.over) showError(err.message);
  }
}

/** The session is over: no frame, the reason in its place, nothing more to follow. */
function onOver(status, title, reason) {
  if (!session) return;
  session.over = true;
  session.stream?.close();
  clearInterval(session.poll);
  setStatus(status);
  $('stop').disabled = true;
  $('extend').disabled = true;
  removeFrame();
  $('ready').hidden = true; // its URL answers nothing any more
  // A step still under way when it ended will not finish.
  for (const li of $('steps').querySelectorAll('li[data-state="started"]')) {
    li.dataset.state = 'stopped';
    li.querySelector('.time').textContent += ' · not finished';
  }
  $('ended-title').textContent = title;
  $('ended-reason').textContent = reason;
  $('ended').hidden = false;
  $('ended').dataset.status = status;
  say(`${title}. ${reason}`);
  renderExpiry();
}

// --- the frame and the build ---

/** A new frame for the preview (a fresh element: nothing of an earlier preview comes back). */
function showFrame(url) {
  const frame = document.createElement('iframe');
  frame.id = 'frame';
  frame.title = 'Preview of your project';
  frame.src = url;
  $('frame-slot').replaceChildren(frame);
  $('ended').hidden = true;
  $('frame-box').hidden = false;
}

/** Removes the frame: the preview's document is unloaded and nothing of it keeps running. */
function removeFrame() {
  $('frame-slot').replaceChildren();
  $('frame-box').hidden = true;
}

/** The build state beside the frame: `{ state, diagnostics }` (a `diagnostics` event, `ready`'s, or the row's `build`); null when not known. */
function renderBuild(build) {
  const state = $('build-state');
  const list = Array.isArray(build?.diagnostics) ? build.diagnostics : [];
  if (!build) {
    state.dataset.state = '';
    state.textContent = 'Waiting for the build…';
  } else if (list.length === 0) {
    state.dataset.state = 'ok';
    state.textContent = 'No errors: the build is clean.';
  } else {
    state.dataset.state = 'errors';
    state.textContent = `${list.length} error${list.length === 1 ? '' : 's'}`;
  }
  $('diagnostic-list').replaceChildren(...list.map(diagnosticItem));
}

/** `src/App.jsx:8:20 — message (plugin)`, the whole message and the code frame under it (Details). */
function diagnosticItem(diagnostic) {
  const li = document.createElement('li');
  li.dataset.kind = diagnostic.kind ?? 'build';
  const where = document.createElement('code');
  where.className = 'where';
  where.textContent = diagnostic.file
    ? `${diagnostic.file}${diagnostic.line ? `:${diagnostic.line}${diagnostic.column ? `:${diagnostic.column}` : ''}` : ''}`
    : diagnostic.kind === 'runtime'
      ? 'runtime error'
      : 'build error';
  const text = String(diagnostic.message ?? '');
  const lines = text.split('\n').map((line) => line.trim()).filter(Boolean);
  // The line that says what is wrong, not a heading such as "Transform failed with 1 error:".
  const headline = lines.find((line) => !line.endsWith(':')) ?? lines[0] ?? '';
  const message = document.createElement('span');
  message.className = 'message';
  message.textContent = headline;
  li.append(where, ' — ', message);
  if (diagnostic.plugin) {
    const plugin = document.createElement('span');
    plugin.className = 'plugin';
    plugin.textContent = ` (${diagnostic.plugin})`;
    li.append(plugin);
  }
  const more = [lines.length > 1 ? text.trim() : '', diagnostic.frame?.trim()].filter(Boolean).join('\n\n');
  if (more) {
    const details = document.createElement('details');
    const summary = document.createElement('summary');
    summary.textContent = 'Details';
    const pre = document.createElement('pre');
    pre.textContent = more;
    details.append(summary, pre);
    li.append(details);
  }
  return li;
}

// --- view helpers ---

function setStatus(status) {
  if (session) session.status = status;
  $('status').dataset.status = status;
  $('status').textContent = status;
}

/** The session's state in words, in the page's live region. */
function say(text) {
  $('status-text').textContent = text;
}

function setExpiry(iso) {
  if (!session) return;
  session.expiresAt = iso;
  $('expires').dateTime = iso;
  renderExpiry();
}

function renderExpiry() {
  if (!session?.expiresAt) return;
  const at = new Date(session.expiresAt);
  const left = Math.max(0, Math.round((at.getTime() - Date.now()) / 1000));
  const inText = session.over ? '' : ` (in ${Math.floor(left / 60)} min ${String(left % 60).padStart(2, '0')} s)`;
  $('expires').textContent = `at ${at.toLocaleTimeString()}${inText}`;
}

function showError(message) {
  $('error').textContent = message;
  $('error').hidden = false;
}

function clearError() {
  $('error').textContent = '';
  $('error').hidden = true;
}
