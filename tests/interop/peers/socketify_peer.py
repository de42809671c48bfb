"""uWebSockets (through socketify, its Python binding) as a peer server for tests/interop.

    python -m tests.interop.peers.socketify_peer

One route per compression setting. uWebSockets expresses context takeover as its compressor
kinds: a SHARED compressor/decompressor means no context takeover for that direction
(server_no_context_takeover / client_no_context_takeover), a DEDICATED one keeps a window
per connection.
"""

from __future__ import annotations

import socket
from typing import Any

from socketify import App, CompressOptions, OpCode

from tests.interop.peers.common import MAX_MESSAGE, PATHS, TAKEOVER, command, fragments, log

HOST = "127.0.0.1"


def compression(path: str) -> int:
    if path == "off":
        return int(CompressOptions.DISABLED)
    server_takeover, client_takeover = TAKEOVER[path]
    compressor = (
        CompressOptions.DEDICATED_COMPRESSOR_256KB
        if server_takeover
        else CompressOptions.SHARED_COMPRESSOR
    )
    decompressor = (
        CompressOptions.DEDICATED_DECOMPRESSOR_32KB
        if client_takeover
        else CompressOptions.SHARED_DECOMPRESSOR
    )
    return int(compressor) | int(decompressor)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def main() -> None:
    app = App()

    def message(ws: Any, data: Any, opcode: OpCode) -> None:
        parsed = command(data) if opcode == OpCode.TEXT else None
        if parsed is None:
            ws.send(data, opcode, True)
        elif parsed[0] == "!close":
            ws.end(int(parsed[1][0]), " ".join(parsed[1][1:]))
        elif parsed[0] == "!ping":
            ws.send(" ".join(parsed[1]).encode(), OpCode.PING)
        elif parsed[0] == "!fragments":
            parts = fragments(int(parsed[1][0]))
            ws.send_first_fragment(parts[0], OpCode.BINARY)
            for part in parts[1:-1]:
                ws.send_fragment(part)
            ws.send_last_fragment(parts[-1])

    def pong(ws: Any, data: Any) -> None:
        ws.send(b"pong:" + bytes(data or b""), OpCode.TEXT)

    def close(ws: Any, code: int, reason: Any) -> None:
        text = bytes(reason).decode() if reason else ""
        log({"event": "close", "code": code, "reason": text})

    for path in PATHS:
        behaviour = {
            "compression": compression(path),
            "max_payload_length": MAX_MESSAGE,
            "max_backpressure": MAX_MESSAGE,
            "idle_timeout": 120,
            "message": message,
            "pong": pong,
            "close": close,
        }
        app.ws(f"/{path}", behaviour)
    port = free_port()

    def listening(config: Any) -> None:
        log({path: f"ws://{HOST}:{port}/{path}" for path in PATHS})

    app.listen({"port": port, "host": HOST}, listening)
    app.run()


if __name__ == "__main__":
    main()
