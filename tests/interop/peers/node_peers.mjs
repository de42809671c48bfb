// Node WebSocket servers for tests/interop: npm `ws` and WebSocket-Node (npm `websocket`).
// Usage: node node_peers.mjs {ws|websocket-node} NODE_MODULES_DIR
// Serves the peers' common protocol (tests/interop/README.md) on 127.0.0.1, one path per
// compression setting, and prints one JSON line {"off": url, "none": url, ...} once listening.
import http from "node:http";
import { createRequire } from "node:module";

const [kind, modules] = process.argv.slice(2);
const require = createRequire(`${modules}/`);
const FRAGMENT = 16384;
const MAX = 64 * 1024 * 1024 + 1024;
// Which side may keep its LZ77 window between messages, per path (RFC 7692 7.1.1).
const TAKEOVER = {
  none: { server: false, client: false },
  server: { server: true, client: false },
  client: { server: false, client: true },
  both: { server: true, client: true },
};

function log(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

function fragments(count) {
  const parts = [];
  for (let n = 0; n < count; n++) {
    const part = Buffer.alloc(FRAGMENT);
    for (let i = 0; i < FRAGMENT; i++) part[i] = (n * FRAGMENT + i) % 251;
    parts.push(part);
  }
  return parts;
}

/** The common protocol on top of one library's connection: `peer` has text(s), binary(b),
 * fragmented(parts), ping(buffer), close(code, reason). */
function handle(peer, data, isText) {
  if (isText && data.startsWith("!")) {
    const [command, ...args] = data.split(" ");
    if (command === "!close") return peer.close(Number(args[0]), args.slice(1).join(" "));
    if (command === "!ping") return peer.ping(Buffer.from(args.join(" ")));
    if (command === "!fragments") return peer.fragmented(fragments(Number(args[0])));
  }
  return isText ? peer.text(data) : peer.binary(data);
}

const server = http.createServer((req, res) => res.writeHead(404).end());

if (kind === "ws") {
  const { WebSocketServer } = require("ws");
  const servers = { off: new WebSocketServer({ noServer: true, maxPayload: MAX }) };
  for (const [name, takeover] of Object.entries(TAKEOVER)) {
    servers[name] = new WebSocketServer({
      noServer: true,
      maxPayload: MAX,
      perMessageDeflate: {
        serverNoContextTakeover: !takeover.server,
        clientNoContextTakeover: !takeover.client,
        threshold: 0,
      },
    });
  }
  for (const wss of Object.values(servers)) {
    wss.on("connection", (ws) => {
      const peer = {
        text: (s) => ws.send(s),
        binary: (b) => ws.send(b),
        fragmented: (parts) =>
          parts.forEach((part, i) => ws.send(part, { fin: i === parts.length - 1 })),
        ping: (payload) => ws.ping(payload),
        close: (code, reason) => ws.close(code, reason),
      };
      ws.on("message", (data, isBinary) => handle(peer, isBinary ? data : data.toString(), !isBinary));
      ws.on("pong", (payload) => ws.send(`pong:${payload.toString()}`));
      ws.on("close", (code, reason) => log({ event: "close", code, reason: reason.toString() }));
    });
  }
  server.on("upgrade", (req, socket, head) => {
    const wss = servers[new URL(req.url, "http://x").pathname.slice(1)];
    if (!wss) return socket.destroy();
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit("connection", ws, req));
  });
} else if (kind === "websocket-node") {
  // WebSocket-Node implements no extension: every path is served uncompressed. Outgoing
  // messages over 16 KiB leave as 16 KiB fragments (its default), which "!fragments" uses.
  const WebSocketServer = require("websocket").server;
  const wss = new WebSocketServer({
    httpServer: server,
    maxReceivedFrameSize: MAX,
    maxReceivedMessageSize: MAX,
    autoAcceptConnections: false,
  });
  wss.on("request", (request) => {
    const connection = request.accept(null, request.origin);
    const peer = {
      text: (s) => connection.sendUTF(s),
      binary: (b) => connection.sendBytes(b),
      fragmented: (parts) => connection.sendBytes(Buffer.concat(parts)),
      ping: (payload) => connection.ping(payload),
      close: (code, reason) => connection.close(code, reason),
    };
    connection.on("message", (message) =>
      message.type === "utf8"
        ? handle(peer, message.utf8Data, true)
        : handle(peer, message.binaryData, false),
    );
    connection.on("pong", (payload) => connection.sendUTF(`pong:${payload.toString()}`));
    connection.on("close", (code, reason) => log({ event: "close", code, reason }));
  });
} else {
  throw new Error(`unknown peer ${kind}`);
}

server.listen(0, "127.0.0.1", () => {
  const base = `ws://127.0.0.1:${server.address().port}`;
  const urls = Object.fromEntries(["off", ...Object.keys(TAKEOVER)].map((n) => [n, `${base}/${n}`]));
  log(urls);
});
