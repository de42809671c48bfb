"""Opening handshakes recorded from real browsers, byte for byte, to replay without them.

Recorded through tests/browser/proxy.py (see test_chromium.py::test_chromium_upgrade_request,
which checks that the live request still has these WebSocket header fields, with this case).
The Host and Origin ports are those of that run; fastws does not compare them with its own.
"""

from __future__ import annotations

#: Debian's Chromium 156.0.8078.108 (under Playwright 1.65), page at http://127.0.0.1:36263,
#: `new WebSocket("ws://127.0.0.1:44083/chat?room=lobby", ["chat", "superchat"])`.
CHROMIUM_156_UPGRADE = (
    b"GET /chat?room=lobby HTTP/1.1\r\n"
    b"Host: 127.0.0.1:44083\r\n"
    b"Connection: Upgrade\r\n"
    b"Pragma: no-cache\r\n"
    b"Cache-Control: no-cache\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    b" HeadlessChrome/156.0.0.0 Safari/537.36\r\n"
    b"Upgrade: websocket\r\n"
    b"Origin: http://127.0.0.1:36263\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
    b"Sec-WebSocket-Key: Q6zToSq0wC6FOT6vw5fVwQ==\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    b"Sec-WebSocket-Protocol: chat, superchat\r\n"
    b"\r\n"
)


def header_fields(request: bytes) -> tuple[str, list[tuple[str, str]]]:
    """The request line and the (name, value) fields of a request head, names as sent."""
    request_line, *lines = request.decode("latin-1").split("\r\n\r\n")[0].split("\r\n")
    fields = []
    for line in lines:
        name, _, value = line.partition(":")
        fields.append((name, value.strip()))
    return request_line, fields


#: The fields a WebSocket server acts on, as Chromium spells them (RFC 6455 4.1).
WEBSOCKET_FIELDS = (
    "Host",
    "Connection",
    "Upgrade",
    "Origin",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Extensions",
    "Sec-WebSocket-Protocol",
)
