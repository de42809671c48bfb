"""What a correct result looks like for the reports of static/wsclient.mjs.

Shared by the Chromium, Firefox and Node tests, so every client is held to the same answers.
"""

from __future__ import annotations

from typing import Any

KiB = 1 << 10
MiB = 1 << 20
#: The message sizes of the issue: empty, the largest 7-bit length, a 16-bit length, and two
#: 64-bit lengths, the last well above the default max_message_size.
SIZES = [0, 125, 64 * KiB, MiB, 64 * MiB]
#: Under Playwright, whose DevTools session copies every frame's payload to the driver
#: (64 MiB takes ~10 s), the largest size is left to the driverless tests (test_postback.py).
DRIVER_SIZES = [0, 125, 64 * KiB, MiB]
#: Servers that echo SIZES need a max_message_size above the largest.
MAX_MESSAGE_SIZE = "65MiB"
#: wsclient.mjs's TEXTS: the last is 1 MiB of 2-, 3- and 4-byte UTF-8 characters.
LONG_TEXT = "é日🎉" * -(-MiB // 9)
TEXT_COUNT = 6


def check_clean_close(close: dict[str, Any], code: int, *reasons: str) -> None:
    """The CloseEvent of a completed closing handshake, with one of `reasons` ("" if none)."""
    assert close["code"] == code, close
    assert close["wasClean"] is True, close
    assert close["reason"] in (reasons or ("",)), close


def check_client_close(close: dict[str, Any]) -> None:
    """After ws.close(4000, "bye"): the CloseEvent reflects the server's answering Close frame,
    which RFC 6455 5.5.1 says "typically echos the status code" (the reason may be dropped)."""
    check_clean_close(close, 4000, "", "bye")


def check_binary(
    report: dict[str, Any], sizes: list[int] = SIZES, data_type: str = "[object ArrayBuffer]"
) -> None:
    """Every ArrayBuffer came back as an ArrayBuffer (or `data_type`, for a client whose
    binary messages are something else, e.g. Node Buffers), byte for byte."""
    results = report["results"]
    assert [r["size"] for r in results] == sizes, results
    for r in results:
        assert r["type"] == data_type, r
        assert r["receivedSize"] == r["size"], r
        assert r["mismatch"] == -1, f"{r['size']} B message differs from byte {r['mismatch']}"
    check_clean_close(report["close"], 1000)


def check_text(report: dict[str, Any], count: int = TEXT_COUNT) -> None:
    """Every text message came back as the same string (`count`: how many of wsclient.mjs's
    TEXTS were sent, the long one last)."""
    results = report["results"]
    assert len(results) == count, results
    for r in results:
        assert r == {**r, "type": "string", "equal": True}, r
    assert results[-1]["utf8Bytes"] == len(LONG_TEXT.encode()), results[-1]
    check_clean_close(report["close"], 1000)


def check_blob(results: list[dict[str, Any]]) -> None:
    """A sent Blob comes back with its bytes, as an ArrayBuffer or a Blob per binaryType."""
    assert [r["binaryType"] for r in results] == ["arraybuffer", "blob"], results
    types = {"arraybuffer": "[object ArrayBuffer]", "blob": "[object Blob]"}
    for r in results:
        assert r["type"] == types[r["binaryType"]], r
        assert r["mismatch"] == -1, r


def check_subprotocol(report: dict[str, Any], expected: str) -> None:
    """`ws.protocol` is the server's pick, and it is what the server's handler saw."""
    assert report["opened"] is True, report
    assert report["protocol"] == expected, report
    assert report["firstMessage"] == (f'"{expected}"' if expected else "null"), report
    check_clean_close(report["close"], 1000)


def check_rejected(report: dict[str, Any], close_event: bool = True) -> None:
    """A refused handshake: `error` fires, the socket never opens, CloseEvent 1006 unclean.
    `close_event=False` for a client known to fire no close event then (Node's undici)."""
    assert report["opened"] is False, report
    assert report["errorFired"] is True, report
    if report["close"] is None and not close_event:
        return
    assert report["close"] is not None, f"error but no close event: {report}"
    assert report["close"]["code"] == 1006, report
    assert report["close"]["wasClean"] is False, report
    assert report["readyState"] == 3, report  # CLOSED


def check_suite(
    report: dict[str, Any],
    sizes: list[int] = SIZES,
    compression: str | None = "permessage-deflate",
    close_after_refusal: bool = True,
) -> None:
    """wsclient.mjs's suite(): every part ran without error and gave the right answers (the
    refused part: an Origin allow-list without this client's origin, or without "" for a
    client that sends none, makes the handshake fail).
    `compression`: how the client's ws.extensions starts with a deflate server (None: the
    client offers no compression, so nothing is agreed). `close_after_refusal`: see
    check_rejected."""
    errors = {k: v["error"] for k, v in report.items() if isinstance(v, dict) and "error" in v}
    assert not errors, errors
    check_subprotocol(report["handshake"], "chat")
    check_binary(report["binary"], sizes)
    check_text(report["text"])
    check_blob(report["blob"])
    check_client_close(report["close"])
    check_rejected(report["refused"], close_after_refusal)
    compressed = report["compressed"]
    check_binary(compressed["binary"], [size for size in sizes if size <= MiB])
    check_text(compressed["text"])
    extensions = compressed["binary"]["extensions"]
    if compression is None:
        assert extensions == "", extensions
    else:
        assert extensions.startswith(compression), extensions
