// A session's events over Server-Sent Events, for as long as the session lives:
// the steps, `ready`, then `diagnostics` each time the build changes, until
// `ended` or `failed` (the api closes the stream after either). Without a token
// the browser's own EventSource reads them (it reconnects with Last-Event-ID by
// itself). An EventSource cannot send an Authorization header, so with a token
// the same stream is read with fetch, reconnecting with Last-Event-ID the same way.

import { getToken } from './api.js';
import { createParser } from './eventsource-parser.js';

export const EVENT_TYPES = ['queued', 'progress', 'ready', 'diagnostics', 'failed', 'ending', 'ended'];
/** After one of these the session is over: nothing more comes (TERMINAL_EVENTS of libs/contracts). */
const TERMINAL = new Set(['failed', 'ended']);

/**
 * Follows `url` until a terminal event (or `close()`): `onEvent(event)` for each,
 * `onError(message)` when the stream cannot be read any more.
 */
export function followEvents(url, { onEvent, onError }) {
  const token = getToken();
  return token ? followWithFetch(url, token, { onEvent, onError }) : followWithEventSource(url, { onEvent, onError });
}

function followWithEventSource(url, { onEvent, onError }) {
  const source = new EventSource(url);
  let done = false;
  const close = () => {
    done = true;
    source.close();
  };
  for (const type of EVENT_TYPES) {
    source.addEventListener(type, (message) => {
      if (done) return;
      const event = JSON.parse(message.data);
      if (TERMINAL.has(event.type)) close();
      onEvent(event);
    });
  }
  source.onerror = async () => {
    if (done || source.readyState !== EventSource.CLOSED) return; // CONNECTING: the browser retries
    // The browser gave up (an answer that is not a stream): ask again to learn why.
    close();
    const res = await fetch(url).catch(() => null);
    const body = res ? await res.json().catch(() => ({})) : {};
    onError(res ? `events answered ${res.status}: ${body.message ?? res.statusText}` : 'the events stream could not be reached');
  };
  return { close };
}

function followWithFetch(url, token, { onEvent, onError }) {
  const controller = new AbortController();
  let done = false;
  let lastEventId = null;
  const close = () => {
    done = true;
    controller.abort();
  };

  (async () => {
    for (let failures = 0; !done && failures < 5; ) {
      try {
        const headers = { authorization: `Bearer ${token}`, accept: 'text/event-stream' };
        if (lastEventId) headers['last-event-id'] = lastEventId;
        const res = await fetch(url, { headers, signal: controller.signal });
        if (!res.ok || !res.body) {
          const body = await res.json().catch(() => ({}));
          close();
          return onError(`events answered ${res.status}: ${body.message ?? res.statusText}`);
        }
        failures = 0;
        for await (const frame of frames(res.body)) {
          if (frame.id) lastEventId = frame.id;
          if (!frame.data) continue;
          const event = JSON.parse(frame.data);
          if (TERMINAL.has(event.type)) close();
          onEvent(event);
          if (done) return;
        }
      } catch (err) {
        if (done) return;
        failures++;
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    if (!done) onError('lost the events stream');
  })();
  return { close };
}

/** The frames of a text/event-stream body (`{ id, event, data }`), read by eventsource-parser as the api's own clients read them. */
async function* frames(body) {
  const parsed = [];
  const parser = createParser({ onEvent: (frame) => parsed.push(frame) });
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    parser.feed(value);
    while (parsed.length > 0) yield parsed.shift();
  }
}
