// WebSocket checks run by a real client: a Chromium page, a Web Worker, Firefox, Node.
//
// Only the standard WebSocket API (MDN's `WebSocket`, what users' pages run) is used. Each
// function returns a plain JSON-able report; the Python tests decide what is right, so a
// failure shows what the client actually saw.

const TIMEOUT_MS = 20000;

/** Deterministic pseudo-random bytes (xorshift32), different for each size: a payload whose
 * corruption, truncation or reordering cannot go unnoticed. */
export function pattern(size, seed = 0x9e3779b9) {
  const bytes = new Uint8Array(size);
  const words = new Uint32Array(bytes.buffer, 0, size >>> 2);
  let x = (seed ^ size) >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  for (let i = words.length * 4; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
  return bytes;
}

/** Index of the first differing byte, -1 if equal (lengths compared first). */
export function firstMismatch(expected, actual) {
  if (expected.length !== actual.length) return Math.min(expected.length, actual.length);
  const n = expected.length >>> 2;
  const a = new Uint32Array(expected.buffer, expected.byteOffset, n);
  const b = new Uint32Array(actual.buffer, actual.byteOffset, n);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) {
      for (let j = i * 4; ; j++) if (expected[j] !== actual[j]) return j;
    }
  }
  for (let i = n * 4; i < expected.length; i++) if (expected[i] !== actual[i]) return i;
  return -1;
}

export function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A socket plus a queue of its incoming messages and a promise of its close event. */
class Client {
  constructor(url, protocols, binaryType = "arraybuffer") {
    this.ws = protocols == null ? new WebSocket(url) : new WebSocket(url, protocols);
    this.ws.binaryType = binaryType;
    this.messages = [];
    this.waiters = [];
    this.errorFired = false;
    this.ws.onmessage = (event) => {
      const waiter = this.waiters.shift();
      if (waiter) waiter.resolve(event.data);
      else this.messages.push(event.data);
    };
    this.ws.onerror = () => {
      this.errorFired = true;
    };
    this.closed = new Promise((resolve) => {
      this.ws.onclose = (event) => {
        const report = { code: event.code, reason: event.reason, wasClean: event.wasClean };
        for (const waiter of this.waiters.splice(0)) {
          waiter.reject(new Error(`closed while waiting for a message: ${JSON.stringify(report)}`));
        }
        resolve(report);
      };
    });
    this.opened = new Promise((resolve, reject) => {
      this.ws.onopen = () => resolve(this);
      this.closed.then((report) =>
        reject(new Error(`closed before opening: ${JSON.stringify(report)}`)),
      );
    });
  }

  recv() {
    if (this.messages.length) return Promise.resolve(this.messages.shift());
    return withTimeout(
      new Promise((resolve, reject) => this.waiters.push({ resolve, reject })),
      "a message",
    );
  }

  async close(code, reason) {
    this.ws.close(code, reason);
    return withTimeout(this.closed, "the close event");
  }
}

export async function connect(url, protocols, binaryType) {
  const client = new Client(url, protocols, binaryType);
  await withTimeout(client.opened, `opening ${url}`);
  return client;
}

/** Open, report what the handshake agreed (or how it failed), close. With `readFirstMessage`
 * the first message is reported too (tests.apps:report_subprotocol sends what it saw).
 * A failed handshake reports its close event, or null if none follows the error event within
 * 2 s (Node 22.23's undici fires only `error` after a non-101 answer, as in
 * nodejs/undici#3546). */
export async function handshake(url, protocols, readFirstMessage = false) {
  const client = new Client(url, protocols);
  const errored = new Promise((resolve) => client.ws.addEventListener("error", resolve));
  const noClose = errored.then(() => new Promise((resolve) => setTimeout(resolve, 2000)));
  const outcome = await withTimeout(
    Promise.race([
      client.opened.then(() => "open", () => "closed"),
      client.closed.then(() => "closed"),
      noClose.then(() => "error only"),
    ]),
    `handshake with ${url}`,
  );
  const report = {
    opened: outcome === "open",
    protocol: client.ws.protocol,
    extensions: client.ws.extensions,
    firstMessage: null,
  };
  if (report.opened && readFirstMessage) {
    report.firstMessage = await client.recv(); // what the server's handler saw (tests.apps)
  }
  if (report.opened) report.close = await client.close(1000);
  else report.close = outcome === "closed" ? await client.closed : null;
  report.errorFired = client.errorFired;
  report.readyState = client.ws.readyState;
  return report;
}

/** Send ArrayBuffers of each size to an echo server; check each reply byte for byte. */
export async function binaryRoundTrips(url, sizes) {
  const client = await connect(url);
  const results = [];
  for (const size of sizes) {
    const sent = pattern(size);
    const started = Date.now();
    client.ws.send(sent.buffer);
    const data = await client.recv();
    const isArrayBuffer = data instanceof ArrayBuffer;
    const received = new Uint8Array(isArrayBuffer ? data : new ArrayBuffer(0));
    results.push({
      size,
      type: Object.prototype.toString.call(data),
      receivedSize: received.length,
      mismatch: isArrayBuffer ? firstMismatch(sent, received) : 0,
      ms: Date.now() - started,
    });
  }
  const close = await client.close(1000);
  return { results, close, extensions: client.ws.extensions };
}

/** Text messages with non-ASCII characters, including ones whose UTF-8 encoding a 131,000-byte
 * frame boundary splits (1 MiB of 2-, 3- and 4-byte characters). */
export const TEXTS = [
  "",
  "plain ASCII",
  "héllo wörld — ça va ?",
  "日本語のテキスト、中文，한국어",
  "astral: 🎉🚀 𝄞 😀 (surrogate pairs in JS, 4 bytes in UTF-8)",
  "é日🎉".repeat(Math.ceil((1 << 20) / 9)),
];

/** `texts` defaults to TEXTS (WebSocket-Node's W3CWebSocket, which drops empty text
 * messages, is given the others). */
export async function textRoundTrips(url, texts = TEXTS) {
  const client = await connect(url);
  const encoder = new TextEncoder();
  const results = [];
  for (const text of texts) {
    client.ws.send(text);
    const data = await client.recv();
    results.push({
      utf8Bytes: encoder.encode(text).length,
      type: typeof data,
      equal: data === text,
      receivedLength: typeof data === "string" ? data.length : -1,
    });
  }
  const close = await client.close(1000);
  return { results, close };
}

/** Send a Blob; the echo comes back as an ArrayBuffer, then (binaryType "blob") as a Blob. */
export async function blobRoundTrips(url) {
  const blob = new Blob([pattern(70000), "text part ✓", pattern(3)]);
  const expected = new Uint8Array(await blob.arrayBuffer());
  const results = [];
  for (const binaryType of ["arraybuffer", "blob"]) {
    const client = await connect(url, undefined, binaryType);
    client.ws.send(blob);
    const data = await client.recv();
    const buffer = data instanceof Blob ? await data.arrayBuffer() : data;
    results.push({
      binaryType,
      type: Object.prototype.toString.call(data),
      size: expected.length,
      mismatch: buffer instanceof ArrayBuffer ? firstMismatch(expected, new Uint8Array(buffer)) : 0,
    });
    await client.close(1000);
  }
  return results;
}

/** Close from the client with a code and reason; report the close event. */
export async function closeWith(url, code, reason) {
  const client = await connect(url);
  client.ws.send("about to close");
  await client.recv();
  return client.close(code, reason);
}

/** Backpressure: the server's handler reads nothing on `holdUrl` until a connection is made to
 * `releaseUrl`. Keep sending `chunk`-byte messages whenever bufferedAmount is low, until it
 * stops moving above 0 (the browser cannot send: the server applies backpressure) or `limit`
 * bytes are sent; release the handler, then check that bufferedAmount drains to 0 and the
 * server says it got every byte. Adapts to however much the TCP buffers absorb. */
export async function backpressure(holdUrl, releaseUrl, chunk, limit) {
  const client = await connect(holdUrl);
  const ws = client.ws;
  const payload = pattern(chunk);
  let sent = 0;
  let stalled = null;
  let previous = -1;
  let same = 0;
  const deadline = Date.now() + TIMEOUT_MS / 2;
  while (Date.now() < deadline) {
    if (ws.bufferedAmount < 2 * chunk && sent < limit) {
      ws.send(payload); // bufferedAmount only goes down once this task yields
      sent += chunk;
      same = 0;
      previous = -1;
      continue;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    const now = ws.bufferedAmount;
    same = now === previous ? same + 1 : 0;
    previous = now;
    if (same >= 4 && (now > 0 || sent >= limit)) {
      stalled = now; // the same value over 200 ms
      break;
    }
  }
  ws.send("done");
  const release = await connect(releaseUrl);
  await release.closed;
  const reply = JSON.parse(await client.recv());
  const drained = ws.bufferedAmount;
  const close = await client.close(1000);
  return { sent, messages: sent / chunk, stalled, drained, reply, close };
}

/** Everything the browser-independent checks cover, for clients driven without a WebDriver
 * (Firefox, Node): one report with each part's result or error. */
export async function suite(urls, sizes) {
  const report = {};
  const parts = {
    handshake: () => handshake(urls.subprotocol, ["chat", "superchat"], true),
    binary: () => binaryRoundTrips(urls.echo, sizes),
    text: () => textRoundTrips(urls.echo),
    blob: () => blobRoundTrips(urls.echo),
    close: () => closeWith(urls.closeLog, 4000, "bye"),
    // A server whose Origin allow-list excludes this client: the handshake must fail.
    refused: () => handshake(urls.refused),
    // A server with permessage-deflate on: what the client agrees to, and that messages
    // (compressible text, incompressible binary) still round-trip.
    compressed: async () => ({
      binary: await binaryRoundTrips(urls.compressed, sizes.filter((size) => size <= 1 << 20)),
      text: await textRoundTrips(urls.compressed),
    }),
  };
  report.ms = {};
  for (const [name, run] of Object.entries(parts)) {
    const started = Date.now();
    try {
      report[name] = await run();
    } catch (error) {
      report[name] = { error: String(error && error.stack ? error.stack : error) };
    }
    report.ms[name] = Date.now() - started;
  }
  return report;
}
