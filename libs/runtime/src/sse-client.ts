/** One Server-Sent Events frame. */
export interface SseFrame {
  id?: string;
  event?: string;
  data: string;
}

/**
 * Reads Server-Sent Events from a response body (fetch's, or node's own
 * response), frame by frame (comments and `retry:` lines are skipped). For
 * clients: CLI, tests, benchmarks, the machines' live files.
 */
export async function* readSse(body: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>): AsyncGenerator<SseFrame> {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of body as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const frame = parseFrame(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (frame) yield frame;
    }
  }
}

function parseFrame(text: string): SseFrame | null {
  const frame: SseFrame = { data: '' };
  let hasData = false;
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon === 0) continue;
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'data') {
      frame.data = hasData ? `${frame.data}\n${value}` : value;
      hasData = true;
    } else if (field === 'id') frame.id = value;
    else if (field === 'event') frame.event = value;
  }
  return hasData ? frame : null;
}
