import { ParleyError } from './errors.js';

/**
 * events reads a text/event-stream body and yields each event's data, joined
 * across its data lines, until a `data: [DONE]`. Comments (Parley's
 * `: keep-alive`) and other fields are skipped; lines may end in \n, \r\n
 * or \r, and be split anywhere between reads, a character's UTF-8 bytes
 * too. Each read is scanned once, so a long event (a replay's one chunk,
 * megabytes) costs its length, not its length times its reads. A stream
 * that ends or fails before [DONE] (the connection cut) is a ParleyError
 * with status 0 and code "network"; an abort rethrows the AbortError.
 */
export async function* events(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const line = new LineSplitter();
  let data: string[] = [];
  try {
    for (;;) {
      let read: ReadableStreamReadResult<Uint8Array>;
      try {
        read = await reader.read();
      } catch (err) {
        if ((err as Error)?.name === 'AbortError') throw err;
        throw cut(`the connection failed: ${(err as Error)?.message ?? err}`);
      }
      const text = read.done ? decoder.decode() : decoder.decode(read.value, { stream: true });
      for (const l of line.push(text)) {
        if (l === '') {
          if (data.length === 0) continue;
          const event = data.join('\n');
          data = [];
          if (event === '[DONE]') return;
          yield event;
        } else if (l.startsWith('data:')) {
          data.push(l.slice(l[5] === ' ' ? 6 : 5));
        }
      }
      if (read.done) break;
    }
  } finally {
    // Leaving early (a [DONE], a consumer that stopped) lets go of the body.
    await reader.cancel().catch(() => {});
  }
  throw cut('the stream ended before [DONE]');
}

function cut(message: string): ParleyError {
  return new ParleyError(0, { error: { code: 'network', message: `${message}; a per-chat turn that had begun is stored as far as it went` } });
}

/** LineSplitter cuts text pushed in pieces into lines, scanning each piece once. */
class LineSplitter {
  #pieces: string[] = [];
  #afterCR = false; // the last piece ended with \r, whose \n may start the next

  push(text: string): string[] {
    const lines: string[] = [];
    let i = 0;
    if (this.#afterCR && text.length > 0) {
      this.#afterCR = false;
      if (text[0] === '\n') i = 1;
    }
    while (i < text.length) {
      const n = text.indexOf('\n', i);
      const r = text.indexOf('\r', i);
      const end = n < 0 ? r : r < 0 ? n : Math.min(n, r);
      if (end < 0) {
        this.#pieces.push(text.slice(i));
        break;
      }
      this.#pieces.push(text.slice(i, end));
      lines.push(this.#pieces.join(''));
      this.#pieces = [];
      i = end + 1;
      if (text[end] === '\r') {
        if (i < text.length) {
          if (text[i] === '\n') i++;
        } else {
          this.#afterCR = true;
        }
      }
    }
    return lines;
  }
}
