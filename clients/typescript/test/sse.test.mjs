// The SSE reader on streams made here, split as no server would split
// them on purpose: byte by byte, a 4 MiB event in small reads, cut short.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ParleyError } from '../dist/index.js';
import { events } from '../dist/sse.js';

// streamOf serves bytes in reads of size.
function streamOf(bytes, size) {
  let i = 0;
  return new ReadableStream({
    pull(c) {
      if (i >= bytes.length) return c.close();
      c.enqueue(bytes.slice(i, i + size));
      i += size;
    },
  });
}

async function collect(stream) {
  const out = [];
  for await (const e of events(stream)) out.push(e);
  return out;
}

const enc = (s) => new TextEncoder().encode(s);

test('events split anywhere, a character too, with every line ending', async () => {
  const text = ': keep-alive\r\n\r\ndata: {"content":"héllo ☃ 𝄞"}\r\n\r\ndata: one\rdata: two\r\rid: 7\ndata:three\n\ndata: [DONE]\n\n';
  const want = ['{"content":"héllo ☃ 𝄞"}', 'one\ntwo', 'three'];
  for (const size of [1, 2, 3, 7, 1 << 16]) {
    assert.deepEqual(await collect(streamOf(enc(text), size)), want, `reads of ${size} bytes`);
  }
});

test('a 4 MiB event in small reads arrives whole', async () => {
  const big = 'x'.repeat(4 << 20);
  const got = await collect(streamOf(enc(`data: ${big}\n\ndata: [DONE]\n\n`), 16 << 10));
  assert.equal(got.length, 1);
  assert.equal(got[0].length, big.length);
});

test('a stream cut before [DONE] is a network ParleyError', async () => {
  for (const text of ['data: {"a":1}\n\n', 'data: {"a":1}\n\ndata: {"b"']) {
    await assert.rejects(collect(streamOf(enc(text), 5)), (err) => {
      assert.ok(err instanceof ParleyError);
      assert.equal(err.status, 0);
      assert.equal(err.code, 'network');
      return true;
    });
  }
});

test('a failed read is a network ParleyError', async () => {
  let n = 0;
  const failing = new ReadableStream({
    pull(c) {
      if (n++ === 0) c.enqueue(enc('data: {"a":1}\n\n'));
      else c.error(new TypeError('terminated'));
    },
  });
  const seen = [];
  await assert.rejects(
    (async () => {
      for await (const e of events(failing)) seen.push(e);
    })(),
    { name: 'ParleyError', status: 0, code: 'network' },
  );
  assert.deepEqual(seen, ['{"a":1}']);
});

test('an error event\'s details.retryAfterSeconds is its retryAfter', () => {
  const err = new ParleyError(200, { error: { code: 'rate_limited', message: 'wait', details: { retryAfterSeconds: 7 } } });
  assert.equal(err.retryAfter, 7);
  assert.equal(new ParleyError(200, { error: { code: 'upstream_error', message: 'x' } }).retryAfter, undefined);
  assert.equal(new ParleyError(429, { error: { code: 'rate_limited', message: 'x', details: { retryAfterSeconds: 7 } } }, 3).retryAfter, 3);
});
