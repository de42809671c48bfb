// WebSocket-Node (npm `websocket`) as a client of fastws, through either of its two APIs:
//   "w3c":    its W3CWebSocket, running static/wsclient.mjs's own functions unchanged;
//   "client": its WebSocketClient / WebSocketConnection (sendBytes, sendUTF, 'message').
// Both produce a report of the same shape, checked by tests/browser/checks.py.
// Usage: node websocket_node_client.mjs '{"api", "fragment", "modules", "urls", "sizes",
//        "maxReceived"}'  -> the JSON report on stdout.
// `fragment`: true keeps the library's default (outgoing messages over 16 KiB are sent as
// 16 KiB fragments), false passes fragmentOutgoingMessages: false (one frame per message).
import { createRequire } from "node:module";
import { TEXTS, firstMismatch, pattern, withTimeout } from "./static/wsclient.mjs";
import * as w3cChecks from "./static/wsclient.mjs";

const config = JSON.parse(process.argv[2]);
// `websocket` lives where .ci/run's npm put it (next to Node 22), not in the repository.
const require = createRequire(`${config.modules}/`);
const websocket = require("websocket");

function clientConfig() {
  // The library's receive limits (1 MiB frames, 8 MiB messages) are below the suite's 64 MiB.
  const settings = {
    maxReceivedFrameSize: config.maxReceived,
    maxReceivedMessageSize: config.maxReceived,
  };
  if (!config.fragment) settings.fragmentOutgoingMessages = false;
  return settings;
}

// --- the `client` API -----------------------------------------------------------------------

/** An open WebSocketConnection plus a queue of its messages and a promise of its close. */
class Connection {
  constructor(connection) {
    this.connection = connection;
    // What the shared parts below call, as on a W3C WebSocket.
    this.ws = {
      send: (data) =>
        typeof data === "string" ? connection.sendUTF(data) : connection.sendBytes(data),
    };
    this.messages = [];
    this.waiters = [];
    this.closed = new Promise((resolve) => {
      connection.on("close", (code, reason) => {
        // The library reports 1006 itself when no closing handshake completed ("Peer not
        // responding", "Connection dropped by remote peer"); it has no wasClean of its own.
        const report = { code, reason: reason ?? "", wasClean: code !== 1006 };
        for (const waiter of this.waiters.splice(0)) {
          waiter.reject(new Error(`closed while waiting: ${JSON.stringify(report)}`));
        }
        resolve(report);
      });
    });
    connection.on("message", (message) => {
      const data = message.type === "utf8" ? message.utf8Data : message.binaryData;
      const waiter = this.waiters.shift();
      if (waiter) waiter.resolve(data);
      else this.messages.push(data);
    });
  }

  recv() {
    if (this.messages.length) return Promise.resolve(this.messages.shift());
    return withTimeout(
      new Promise((resolve, reject) => this.waiters.push({ resolve, reject })),
      "a message",
    );
  }

  close(code, reason) {
    this.connection.close(code, reason);
    return withTimeout(this.closed, "the close event");
  }
}

/** Resolves to a Connection, or to {failed: description} after 'connectFailed'. */
function open(url, protocols) {
  const client = new websocket.client(clientConfig());
  return withTimeout(
    new Promise((resolve) => {
      client.on("connect", (connection) => resolve(new Connection(connection)));
      client.on("connectFailed", (error) => resolve({ failed: String(error) }));
      client.connect(url, protocols);
    }),
    `opening ${url}`,
  );
}

async function connected(url, protocols) {
  const conn = await open(url, protocols);
  if (conn.failed) throw new Error(`connect failed: ${conn.failed}`);
  return conn;
}

const clientApi = {
  async handshake(url, protocols, readFirstMessage = false) {
    const conn = await open(url, protocols);
    if (conn.failed) {
      // No close event follows a failed handshake in this API: 'connectFailed' is all.
      return { opened: false, errorFired: true, close: null, failure: conn.failed };
    }
    const report = {
      opened: true,
      protocol: conn.connection.protocol ?? "",
      extensions: "", // WebSocket-Node implements no extension
      firstMessage: readFirstMessage ? await conn.recv() : null,
    };
    report.close = await conn.close(1000);
    report.errorFired = false;
    return report;
  },

  async binaryRoundTrips(url, sizes) {
    const conn = await connected(url);
    const results = [];
    for (const size of sizes) {
      const sent = pattern(size);
      const started = Date.now();
      conn.connection.sendBytes(Buffer.from(sent.buffer, sent.byteOffset, sent.length));
      const data = await conn.recv();
      const isBuffer = Buffer.isBuffer(data);
      results.push({
        size,
        type: Object.prototype.toString.call(data),
        receivedSize: isBuffer ? data.length : -1,
        mismatch: isBuffer ? firstMismatch(sent, new Uint8Array(data)) : 0,
        ms: Date.now() - started,
      });
    }
    return { results, close: await conn.close(1000), extensions: "" };
  },

  async textRoundTrips(url, texts = TEXTS) {
    const conn = await connected(url);
    const encoder = new TextEncoder();
    const results = [];
    for (const text of texts) {
      conn.connection.sendUTF(text);
      const data = await conn.recv();
      results.push({
        utf8Bytes: encoder.encode(text).length,
        type: typeof data,
        equal: data === text,
        receivedLength: typeof data === "string" ? data.length : -1,
      });
    }
    return { results, close: await conn.close(1000) };
  },

  async closeWith(url, code, reason) {
    const conn = await connected(url);
    conn.connection.sendUTF("about to close");
    await conn.recv();
    return conn.close(code, reason);
  },
};

// --- W3CWebSocket: wsclient.mjs's functions with W3CWebSocket as the global WebSocket -------

const w3cApi = {
  ...w3cChecks,
  // W3CWebSocket dispatches a text message only `if (message.utf8Data)`: an empty one is
  // dropped (1.0.35's onMessage). The TEXTS without "" here; emptyText shows what arrives.
  textRoundTrips: (url) => w3cChecks.textRoundTrips(url, TEXTS.slice(1)),
};

// Parts both APIs run the same way, on a connection with ws.send, recv() and close().

/** "" then "after": what arrives up to "after" (an empty text message may get lost). */
async function emptyText(connect, url) {
  const client = await connect(url);
  client.ws.send("");
  client.ws.send("after");
  const received = [];
  while (received.at(-1) !== "after") received.push(await client.recv());
  await client.close(1000);
  return received;
}

/** The close event of a connection the server closes (after `message`, if given). */
async function serverCloses(connect, url, message) {
  const client = await connect(url);
  if (message != null) client.ws.send(message);
  return withTimeout(client.closed, "the server's close");
}

for (const [api, connect] of [
  [clientApi, connected],
  [w3cApi, w3cChecks.connect],
]) {
  api.emptyText = (url) => emptyText(connect, url);
  api.serverCloses = (url, message) => serverCloses(connect, url, message);
}

if (config.api === "w3c") {
  const W3CWebSocket = websocket.w3cwebsocket;
  globalThis.WebSocket = class extends W3CWebSocket {
    constructor(url, protocols) {
      super(url, protocols, undefined, undefined, undefined, clientConfig());
    }
  };
}
const api = config.api === "w3c" ? w3cApi : clientApi;
const urls = config.urls;
const parts = {
  handshake: () => api.handshake(urls.subprotocol, ["chat", "superchat"], true),
  binary: () => api.binaryRoundTrips(urls.echo, config.sizes),
  text: () => api.textRoundTrips(urls.echo),
  emptyText: () => api.emptyText(urls.echo),
  close: () => api.closeWith(urls.closeLog, 4000, "bye"),
  serverClose: () => api.serverCloses(urls.closes4000),
  handlerError: () => api.serverCloses(urls.raises, "raise"),
  refused: () => api.handshake(urls.refused),
  compressed: async () => ({
    binary: await api.binaryRoundTrips(urls.compressed, [0, 125, 1 << 16, 1 << 20]),
    text: await api.textRoundTrips(urls.compressed),
  }),
};
const report = { version: websocket.version, node: process.version, ms: {} };
for (const [name, run] of Object.entries(parts)) {
  const started = Date.now();
  try {
    report[name] = await run();
  } catch (error) {
    report[name] = { error: String(error && error.stack ? error.stack : error) };
  }
  report.ms[name] = Date.now() - started;
}
process.stdout.write(JSON.stringify(report));
process.exit(0); // W3CWebSocket may keep a client's timers alive after its last close
