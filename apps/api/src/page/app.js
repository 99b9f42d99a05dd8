// The preview page: pick a project (or a template), press Preview, watch the steps
// arrive over SSE, then use the preview in the frame; extend or stop it.

import { ApiError, call, getToken, setToken } from './api.js';
import { followEvents } from './events.js';

const $ = (id) => document.getElementById(id);
/** Projects this browser created, for deployments whose api lists none. */
const CREATED_KEY = 'velocity-preview.created-projects';
const EXTEND_SECONDS = 300;

let config = { demoProjectId: '', templates: [], steps: [] };
/** The session on screen: { id, stream, t0, previewUrl, expiresAt, status, poll, ended } */
let session = null;
/** Whether the user chose in the project list (else the demo project stays selected as the list fills). */
let picked = false;

init().catch((err) => showError(err.message));

async function init() {
  config = await call('GET', '/ui/config.json');
  $('token').value = getToken();
  $('token').addEventListener('change', () => {
    setToken($('token').value.trim());
    void loadProjects();
  });
  $('template-list').replaceChildren(
    ...config.templates.map((template) => option(`template:${template}`, `New ${template} project`)),
  );
  $('project').addEventListener('change', () => (picked = true));
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

function remembered() {
  try {
    return JSON.parse(localStorage.getItem(CREATED_KEY) ?? '[]');
  } catch {
    return [];
  }
}

function remember(project) {
  const list = remembered().filter((p) => p.id !== project.id);
  localStorage.setItem(CREATED_KEY, JSON.stringify([{ id: project.id, name: project.name, templateType: project.templateType }, ...list].slice(0, 20)));
}

/** The demo project, the user's projects (GET /v1/projects, where the api has it) and those made here. */
async function loadProjects(select) {
  const projects = [{ id: config.demoProjectId, name: 'Demo project', templateType: 'react' }];
  const note = $('projects-note');
  note.hidden = true;
  try {
    const listed = await call('GET', '/v1/projects');
    const items = Array.isArray(listed) ? listed : Array.isArray(listed?.projects) ? listed.projects : [];
    projects.push(...items);
  } catch (err) {
    // An api without a project list answers 404: the page still knows the ones it made.
    if (!(err instanceof ApiError && (err.status === 404 || err.status === 405))) {
      note.textContent = `Could not list your projects: ${err.message}`;
      note.hidden = false;
    }
  }
  projects.push(...remembered());
  const seen = new Set();
  const unique = projects.filter((p) => p && p.id && !seen.has(p.id) && seen.add(p.id));
  const current = select ?? (picked ? $('project').value : config.demoProjectId);
  $('project-list').replaceChildren(
    ...unique.map((p) => option(p.id, `${p.name}${p.templateType ? ` (${p.templateType})` : ''}${p.id === config.demoProjectId ? '' : ` · ${p.id.slice(0, 8)}`}`)),
  );
  if (current && [...$('project').options].some((o) => o.value === current)) $('project').value = current;
}

// --- starting ---

async function startPreview() {
  clearError();
  endView();
  const button = $('preview');
  button.disabled = true;
  try {
    let projectId = $('project-id').value.trim();
    if (!projectId) {
      const choice = $('project').value;
      if (choice.startsWith('template:')) {
        const templateType = choice.slice('template:'.length);
        const name = `${templateType} project ${new Date().toLocaleTimeString()}`;
        const project = await call('POST', '/v1/projects', { name, templateType });
        remember(project);
        await loadProjects(project.id);
        projectId = project.id;
      } else {
        projectId = choice;
      }
    }
    const created = await call('POST', '/v1/sessions', { projectId });
    showSession(created.sessionId);
    session.stream = followEvents(created.eventsUrl ?? `/v1/sessions/${created.sessionId}/events`, {
      onEvent: (event) => onEvent(created.sessionId, event),
      onError: (message) => sessionProblem(created.sessionId, message),
    });
  } catch (err) {
    showError(err.message);
  } finally {
    button.disabled = false;
  }
}

function showSession(sessionId) {
  session = { id: sessionId, stream: null, t0: null, previewUrl: null, expiresAt: null, poll: null, ended: false };
  $('session').hidden = false;
  $('session-id').textContent = sessionId;
  $('ready').hidden = true;
  $('frame-box').hidden = true;
  $('frame').removeAttribute('src');
  setStatus('queued');
  $('steps').replaceChildren(
    ...config.steps.map((step) => {
      const li = document.createElement('li');
      li.dataset.step = step;
      li.dataset.state = 'pending';
      li.innerHTML = '<span class="icon" aria-hidden="true"></span><span class="name"></span><span class="time"></span>';
      li.querySelector('.name').textContent = step;
      return li;
    }),
  );
}

/** Drops the session on screen (its stream and polling), leaving the view as it is. */
function endView() {
  if (!session) return;
  session.stream?.close();
  clearInterval(session.poll);
  session = null;
}

// --- events ---

/** ` · 120 packages, 31.2 MB (cached)` for an install's progress; '' for other steps. */
function installed(event) {
  if (event.packages === undefined) return '';
  const mb = event.bytes === undefined ? '' : `, ${(event.bytes / 1e6).toFixed(1)} MB`;
  return ` · ${event.packages} packages${mb}${event.cached ? ' (cached)' : ''}`;
}

function onEvent(sessionId, event) {
  if (!session || session.id !== sessionId) return;
  session.t0 ??= event.at;
  const since = `+${((event.at - session.t0) / 1000).toFixed(2)}s`;
  switch (event.type) {
    case 'queued':
      setStatus('queued');
      break;
    case 'progress': {
      setStatus(event.step === 'create-machine' || event.step === 'verify-url' || event.step === 'activate' ? 'starting' : 'creating');
      const li = stepItem(event.step);
      li.dataset.state = event.state;
      if (event.state === 'running') li.dataset.state = 'started';
      li.querySelector('.time').textContent =
        event.state === 'done'
          ? `${Math.round(event.ms ?? 0)} ms${installed(event)} · ${since}`
          : event.state === 'running'
            ? `${installed(event).slice(3)} so far`
            : `started ${since}${event.attempt > 1 ? ` (attempt ${event.attempt})` : ''}`;
      break;
    }
    case 'ready':
      setStatus('active');
      session.previewUrl = event.previewUrl;
      setExpiry(event.expiresAt);
      $('preview-url').href = event.previewUrl;
      $('preview-url').textContent = event.previewUrl;
      $('ready').hidden = false;
      $('frame').src = event.previewUrl;
      $('frame-box').hidden = false;
      $('stop').disabled = false;
      $('extend').disabled = false;
      // The page stops following the events at ready (events.js); the row says when the session ends on its own.
      session.poll = setInterval(() => void refresh(sessionId), 5000);
      break;
    case 'failed':
      setStatus('error');
      if (event.step) {
        const li = stepItem(event.step);
        li.dataset.state = 'failed';
        li.querySelector('.time').textContent = `failed ${since}`;
      }
      showError(`Preview failed${event.step ? ` at ${event.step}` : ''}: ${event.reason}${event.retryable ? ' (temporary: try again)' : ''}`);
      sessionOver();
      break;
    case 'ending':
      setStatus('ending');
      break;
    case 'ended':
      onEnded(event.reason);
      break;
  }
}

function stepItem(step) {
  let li = $('steps').querySelector(`li[data-step="${CSS.escape(step)}"]`);
  if (!li) {
    li = document.createElement('li');
    li.dataset.step = step;
    li.innerHTML = '<span class="icon" aria-hidden="true"></span><span class="name"></span><span class="time"></span>';
    li.querySelector('.name').textContent = step;
    $('steps').append(li);
  }
  return li;
}

function sessionProblem(sessionId, message) {
  if (!session || session.id !== sessionId) return;
  showError(message);
}

// --- stop, extend, the row ---

async function stopSession() {
  if (!session) return;
  const sessionId = session.id;
  $('stop').disabled = true;
  $('extend').disabled = true;
  try {
    const stopped = await call('DELETE', `/v1/sessions/${sessionId}`);
    setStatus(stopped.status === 'error' ? 'error' : 'ending');
    clearInterval(session.poll);
    session.poll = setInterval(() => void refresh(sessionId), 500);
  } catch (err) {
    showError(err.message);
    $('stop').disabled = false;
    $('extend').disabled = false;
  }
}

async function extendSession() {
  if (!session) return;
  $('extend').disabled = true;
  try {
    const extended = await call('POST', `/v1/sessions/${session.id}/extend`, { seconds: EXTEND_SECONDS });
    setExpiry(extended.expiresAt);
    clearError();
  } catch (err) {
    showError(err.message);
  } finally {
    if (session && !session.ended) $('extend').disabled = false;
  }
}

/** Reads the row: shows the status, and the end when it came. */
async function refresh(sessionId) {
  try {
    const row = await call('GET', `/v1/sessions/${sessionId}`);
    if (!session || session.id !== sessionId || session.ended) return;
    if (row.expiresAt) setExpiry(row.expiresAt);
    if (row.status === 'ended') onEnded('ended');
    else if (row.status === 'error') {
      setStatus('error');
      if (row.errorMessage) showError(`Session ended with an error: ${row.errorMessage}`);
      sessionOver();
    } else setStatus(row.status);
  } catch (err) {
    if (session && session.id === sessionId) showError(err.message);
  }
}

function onEnded(reason) {
  setStatus('ended');
  $('status').title = reason ?? '';
  sessionOver();
  // The frame shows what its URL answers now: 410, the session has ended.
  if (session?.previewUrl) $('frame').src = session.previewUrl;
}

function sessionOver() {
  if (!session) return;
  session.ended = true;
  session.stream?.close();
  clearInterval(session.poll);
  $('stop').disabled = true;
  $('extend').disabled = true;
}

// --- view helpers ---

function setStatus(status) {
  $('status').dataset.status = status;
  $('status').textContent = status;
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
  const inText = session.ended ? '' : ` (in ${Math.floor(left / 60)} min ${String(left % 60).padStart(2, '0')} s)`;
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
