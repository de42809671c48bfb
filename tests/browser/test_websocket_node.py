"""WebSocket-Node (npm `websocket` 1.0.35) as a client of real fastws server processes.

Both of its client APIs: W3CWebSocket (running static/wsclient.mjs's functions unchanged) and
its own WebSocketClient/WebSocketConnection. Each with its default outgoing fragmentation
(messages over 16 KiB leave as 16 KiB fragments) and with fragmentOutgoingMessages: false (one
frame per message), checked on the wire by a recording proxy. WebSocket-Node implements no
extension: it never offers permessage-deflate, so against a deflate server it must still be
served, uncompressed.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.checks import (
    LONG_TEXT,
    SIZES,
    TEXT_COUNT,
    check_binary,
    check_clean_close,
    check_rejected,
    check_subprotocol,
    check_text,
)
from tests.browser.proxy import (
    FrameHeader,
    ProxiedConnection,
    RecordingProxy,
    messages,
    response_field,
)

if TYPE_CHECKING:
    from tests.conftest import ServerProcess

CLIENT = Path(__file__).resolve().parent / "websocket_node_client.mjs"
#: WebSocket-Node's fragmentationThreshold (0x4000), the size of its outgoing fragments.
FRAGMENT = 16 * 1024
#: Its default receive limits (1 MiB frames, 8 MiB messages) are raised for 64 MiB echoes.
MAX_RECEIVED = 65 * 1024 * 1024
#: How each API hands over a binary message: an ArrayBuffer (W3C), a Node Buffer (client).
DATA_TYPES = {"w3c": "[object ArrayBuffer]", "client": "[object Uint8Array]"}
CLOSE_LINE = "client closed: 4000 'bye'"


def check_close(close: dict[str, Any], api: str, code: int, *reasons: str) -> None:
    """A completed closing handshake with `code`. W3CWebSocket sets wasClean to `code === 1000`
    whatever happened (its createCloseEvent), so for it the flag only says that; the client
    API reports 1006 itself when no handshake completed (websocket_node_client.mjs: wasClean = code
    != 1006)."""
    if api == "w3c" and code != 1000:
        assert close["wasClean"] is False, close  # the library's definition, not the wire's
        close = {**close, "wasClean": True}
    check_clean_close(close, code, *reasons)


def own_description(value: Any) -> Any:
    """WebSocket-Node's close(1000) with no reason sends the reason "Normal connection closure"
    and reports its own code and reason in its close event (not the server's answer, which
    echoes the code): every such event in the report reads as the reason-less close the
    suite's checks expect."""
    if isinstance(value, list):
        return [own_description(item) for item in value]
    if not isinstance(value, dict):
        return value
    if value.get("code") == 1000 and value.get("reason") == "Normal connection closure":
        return {**value, "reason": ""}
    return {key: own_description(item) for key, item in value.items()}


def check_fragments(frames: list[FrameHeader], size: int, opcode: int, fragment: bool) -> None:
    """One message as WebSocket-Node put it on the wire: 16 KiB fragments (RFC 6455 5.4)
    when it fragments and the message is larger, else one frame; never RSV1."""
    count = math.ceil(size / FRAGMENT) if fragment and size > FRAGMENT else 1
    assert [f.opcode for f in frames] == [opcode] + [0] * (count - 1), (size, frames[:3])
    assert [f.fin for f in frames] == [False] * (count - 1) + [True], (size, frames[-2:])
    assert all(f.length == FRAGMENT for f in frames[:-1]), (size, frames[:3])
    assert sum(f.length for f in frames) == size, size
    assert not any(f.rsv1 for f in frames), frames[:3]


def wait_for_count(server: ServerProcess, text: str, count: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while server.stderr().count(text) < count:
        assert time.monotonic() < deadline, f"{text!r} not logged {count} times: {server.stderr()}"
        time.sleep(0.05)


def by_opcode(connections: list[ProxiedConnection], opcode: int) -> list[list[FrameHeader]]:
    """The messages of the proxied connection whose first message has `opcode`."""
    for conn in connections:
        assert conn.done.wait(5), "a proxied connection is still open"
        grouped = messages(conn.client_frames)
        if grouped and grouped[0][0].opcode == opcode:
            return grouped
    raise AssertionError(f"no connection sent opcode {opcode}: {connections}")


@pytest.mark.parametrize("fragment", [True, False], ids=["16KiB-fragments", "unfragmented"])
@pytest.mark.parametrize("api", ["w3c", "client"])
def test_websocket_node(
    websocket_node: tuple[list[str], Path],
    suite_urls: dict[str, str],
    echo: ServerProcess,
    compressed_echo: ServerProcess,
    close_log_server: ServerProcess,
    closes_4000: ServerProcess,
    raises: ServerProcess,
    api: str,
    fragment: bool,
) -> None:
    """Subprotocol "chat"; binary messages of 0 B to 64 MiB byte-exact and non-ASCII text up to
    1 MiB, sent in 16 KiB fragments by default or in one frame each, as the proxy sees; the
    client's close(4000, "bye") reaches the handler and the server's answer completes it;
    the server's close(4000, "bye") and 1011 (handler error) reach the client; an Origin
    allow-list refuses it (it sends no Origin); no permessage-deflate offer, so a deflate
    server serves it uncompressed."""
    node, modules = websocket_node
    closes_before = close_log_server.stderr().count(CLOSE_LINE)
    with RecordingProxy(echo.port) as plain, RecordingProxy(compressed_echo.port) as deflate:
        urls = {
            **suite_urls,
            "echo": plain.url_for("/"),
            "compressed": deflate.url_for("/"),
            "closes4000": closes_4000.url,
            "raises": raises.url,
        }
        config = {
            "api": api,
            "fragment": fragment,
            "modules": str(modules),
            "urls": urls,
            "sizes": SIZES,
            "maxReceived": MAX_RECEIVED,
        }
        done = subprocess.run(
            [*node, str(CLIENT), json.dumps(config)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        report = own_description(json.loads(done.stdout))
    print("WebSocket-Node", report["version"], "on Node", report["node"], "ms:", report["ms"])
    errors = {k: v["error"] for k, v in report.items() if isinstance(v, dict) and "error" in v}
    assert not errors, errors
    assert report["version"] == "1.0.35", report["version"]

    check_subprotocol(report["handshake"], "chat")
    check_binary(report["binary"], SIZES, DATA_TYPES[api])
    # W3CWebSocket drops an empty text message (it dispatches only `if (message.utf8Data)`);
    # fastws echoes it, as the client API shows. Its TEXTS run without "".
    texts = TEXT_COUNT - 1 if api == "w3c" else TEXT_COUNT
    check_text(report["text"], texts)
    assert report["emptyText"] == (["after"] if api == "w3c" else ["", "after"]), report
    check_close(report["close"], api, 4000, "bye")
    wait_for_count(close_log_server, CLOSE_LINE, closes_before + 1)
    check_close(report["serverClose"], api, 4000, "bye")
    # No reason on the wire (nothing of the exception leaks); WebSocket-Node then reports the
    # description from its own table.
    check_close(report["handlerError"], api, 1011, "Internal Server Error")
    # W3CWebSocket fires error + close 1006; the client API only 'connectFailed'.
    check_rejected(report["refused"], close_event=api == "w3c")

    binary = by_opcode(plain.connections, 2)
    assert len(binary) == len(SIZES), [len(m) for m in binary]
    for size, frames in zip(SIZES, binary, strict=True):
        check_fragments(frames, size, 2, fragment)
    long_text = by_opcode(plain.connections, 1)[-1]
    check_fragments(long_text, len(LONG_TEXT.encode()), 1, fragment)

    compressed = report["compressed"]
    check_binary(compressed["binary"], [0, 125, 1 << 16, 1 << 20], DATA_TYPES[api])
    check_text(compressed["text"], texts)
    # Nothing agreed: W3CWebSocket's `extensions` is its connection's empty list, not "".
    assert compressed["binary"]["extensions"] in ("", []), compressed["binary"]
    for conn in deflate.connections:
        assert "sec-websocket-extensions" not in conn.request_head.decode().lower(), conn
        assert response_field(conn.response_head, "sec-websocket-extensions") == "", conn
        assert not any(f.rsv1 for f in conn.client_frames), conn.client_frames[:3]
