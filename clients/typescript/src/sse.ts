import { ParleyError } from './errors.js';

/**
 * events reads a text/event-stream body and yields each event's data, joined
 * across its data lines, until the stream ends or a `data: [DONE]` arrives.
 * Comments (Parley's `: keep-alive`) and other fields are skipped; lines
 * may end in \n, \r\n or \r, and may be split anywhere between reads.
 */
export async function* events(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let data: string[] = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      // A \r at the end may be the first half of \r\n: wait for the next read.
      let end: number;
      while ((end = lineEnd(buffer, done)) >= 0) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(buffer[end] === '\r' && buffer[end + 1] === '\n' ? end + 2 : end + 1);
        if (line === '') {
          if (data.length > 0) {
            const event = data.join('\n');
            data = [];
            if (event === '[DONE]') return;
            yield event;
          }
        } else if (line.startsWith('data:')) {
          data.push(line.slice(line[5] === ' ' ? 6 : 5));
        }
      }
      if (done) break;
    }
  } finally {
    // Leaving early (a [DONE], a consumer that stopped) lets go of the body.
    await reader.cancel().catch(() => {});
  }
  if (data.length > 0) {
    throw new ParleyError(200, { error: { code: 'upstream_error', message: 'the stream ended in the middle of an event' } });
  }
  throw new ParleyError(200, { error: { code: 'upstream_error', message: 'the stream ended without [DONE]' } });
}

function lineEnd(s: string, done: boolean): number {
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\n') return i;
    if (s[i] === '\r') return i + 1 < s.length || done ? i : -1;
  }
  return -1;
}
