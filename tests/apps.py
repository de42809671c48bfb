"""Test-only handler apps, loaded by the server process as ``tests.apps:NAME``.

Written against the public handler API only (README). They report what the server showed
them back to the client as JSON text messages, so the tests can check it from outside.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

#: Put in the message of the exception `raise_on_message` raises, so the test can find it in
#: the server log (and check it does not leak to the client).
FAILURE_MARKER = "deliberate-test-failure-7f3a"
#: Payload of the ping `ping_then_echo` sends.
PING_PAYLOAD = b"fastws-ping"


async def echo(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


async def slow_echo(ws: Any) -> None:
    """Echo, 20 ms after each message: with max_queue 1 the server stops reading meanwhile,
    so what a client sends backs up in its own transport."""
    async for message in ws:
        await asyncio.sleep(0.02)
        await ws.send(message)


async def echo_release_report(ws: Any) -> None:
    """Echo with send(release=True), then say whether the message was released by it."""
    async for message in ws.messages():
        await ws.send(message, release=True)
        await ws.send(json.dumps({"released": getattr(message, "released", None)}))


async def ping_then_echo(ws: Any) -> None:
    """Ping the client first; once its pong is back, send {"rtt": seconds}; then echo."""
    rtt = await ws.ping(PING_PAYLOAD)
    await ws.send(json.dumps({"rtt": rtt}))
    await echo(ws)


async def report_subprotocol(ws: Any) -> None:
    """Send json.dumps(ws.subprotocol), then echo."""
    await ws.send(json.dumps(ws.subprotocol))
    await echo(ws)


def _query_string(request: Any) -> str:
    """The query as a string, whether Request.query is a string or a mapping."""
    query = getattr(request, "query", None)
    if query is None:
        path = str(getattr(request, "path", ""))
        return path.partition("?")[2]
    if isinstance(query, str | bytes):
        return query.decode() if isinstance(query, bytes) else query
    if isinstance(query, Mapping):
        pairs = []
        for key, value in query.items():
            values = value if isinstance(value, list | tuple) else [value]
            pairs += [(key, v) for v in values]
        return urlencode(pairs)
    return str(query)


async def report_request(ws: Any) -> None:
    """Send {"path", "query" (as a string), "header" (X-Fastws-Test, asked in another case)}."""
    request = ws.request
    await ws.send(
        json.dumps(
            {
                "path": request.path,
                "query": _query_string(request),
                "header": request.headers.get("X-FASTWS-TEST"),
            }
        )
    )
    await echo(ws)


async def report_remote_address(ws: Any) -> None:
    """Send [host, port] of ws.remote_address."""
    host, port = ws.remote_address[:2]
    await ws.send(json.dumps([host, port]))
    await echo(ws)


async def return_immediately(ws: Any) -> None:
    """Return at once: the server closes with 1000."""
    return


async def raise_on_message(ws: Any) -> None:
    """Echo, except that the message "raise" makes the handler raise (the server closes 1011)."""
    async for message in ws:
        if message == "raise":
            raise RuntimeError(f"{FAILURE_MARKER}: the test asked this handler to fail")
        await ws.send(message)


async def close_4000_bye(ws: Any) -> None:
    """Close with code 4000 and reason "bye" as soon as the connection is open."""
    await ws.close(4000, "bye")


async def close_immediately(ws: Any) -> None:
    """Server-initiated normal close as soon as the connection is open."""
    await ws.close()


def deny_unless_token(request: Any) -> Any:
    """process_request hook: 403 "forbidden" unless the query has token=ok."""
    import fastws  # deferred: the server process imports fastws anyway

    if ("token", "ok") in parse_qsl(_query_string(request)):
        return None
    return fastws.Response(403, body=b"forbidden")


async def deny_unless_token_async(request: Any) -> Any:
    """The same hook, as a coroutine function (the contract allows both)."""
    return deny_unless_token(request)


#: Size of each message `flood` sends.
FLOOD_MESSAGE = 1 << 20


async def flood(ws: Any) -> None:
    """Send 1 MiB binary messages forever, each starting with its 8-byte sequence number."""
    payload = bytearray(FLOOD_MESSAGE)
    seq = 0
    while True:
        payload[:8] = seq.to_bytes(8, "big")
        await ws.send(bytes(payload))
        seq += 1


async def never_reads(ws: Any) -> None:
    """Accept the connection and never read a message (the client fills the receive queue)."""
    await ws.wait_closed()


async def log_close(ws: Any) -> None:
    """Echo; when the client closes, print "client closed: CODE REASON" (repr'd reason) to
    stderr, where the test reads what close code and reason reached the handler."""
    import contextlib
    import sys

    import fastws

    with contextlib.suppress(fastws.ConnectionClosed):
        await echo(ws)
    print(f"client closed: {ws.close_code} {ws.close_reason!r}", file=sys.stderr, flush=True)


_released: dict[str, Any] = {}


async def hold_until_released(ws: Any) -> None:
    """Backpressure. On /hold/KEY: read nothing until a connection is made to /release/KEY (so
    the server stops reading once max_queue messages wait), then read binary messages until
    the text "done" and send {"messages": n, "bytes": total}. /release/KEY closes at once.
    Keeps its state in this process: use with a single-process server."""
    import asyncio

    kind, _, key = ws.request.path.partition("?")[0].strip("/").partition("/")
    event = _released.setdefault(key, asyncio.Event())
    if kind == "release":
        event.set()
        return
    await event.wait()
    del _released[key]
    messages = size = 0
    async for message in ws:
        if message == "done":
            break
        messages += 1
        size += len(message)
    await ws.send(json.dumps({"messages": messages, "bytes": size}))
    await echo(ws)


async def close_1011_on_message(ws: Any) -> None:
    """Close with 1011 "backend down" on the first message, as a server whose backend failed."""
    async for _ in ws:
        await ws.close(1011, "backend down")
        return


def _vm_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


async def digest(ws: Any) -> None:
    """For each binary message: reply {"size", "sha256", "zero_copy", "rss_held", "rss_after"}:
    zero_copy says the message came in its own mmap region; rss_* are this process's VmRSS
    (KiB) while holding it and after release()."""
    import hashlib

    async for message in ws.messages():
        if isinstance(message, str):
            await ws.send(message)
            continue
        held = _vm_kib("VmRSS")
        report = {
            "size": len(message),
            "sha256": hashlib.sha256(message.data).hexdigest(),
            "zero_copy": type(message._buffer).__name__ == "Region",
        }
        message.release()
        report.update(rss_held=held, rss_after=_vm_kib("VmRSS"))
        await ws.send(json.dumps(report))


async def send_file_from_query(ws: Any) -> None:
    """/?path=P&offset=O&count=C: send that part of file P with ws.send_file, then close."""
    params = dict(parse_qsl(_query_string(ws.request)))
    count = int(params["count"]) if "count" in params else None
    await ws.send_file(params["path"], int(params.get("offset", 0)), count)
    await ws.close()


async def stream_digest(ws: Any) -> None:
    """Each message read with ws.stream(): reply {"size", "sha256", "pieces", "largest",
    "rss_peak"} where rss_peak is this process's VmHWM (KiB) after the message."""
    import hashlib

    while True:
        digest, size, pieces, largest = hashlib.sha256(), 0, 0, 0
        async for piece in ws.stream():
            data = piece.encode() if isinstance(piece, str) else piece.data
            digest.update(data)
            size += len(data)
            pieces += 1
            largest = max(largest, len(data))
            if not isinstance(piece, str):
                piece.release()
        report = {"size": size, "sha256": digest.hexdigest(), "pieces": pieces}
        report.update(largest=largest, rss_peak=_vm_kib("VmHWM"))
        await ws.send(json.dumps(report))


async def abandon_stream(ws: Any) -> None:
    """Read one piece of each message with ws.stream(), then leave the loop; reply with the
    piece's size and the size of what recv() returns next, so the test sees that the rest
    of the abandoned message was skipped, not mistaken for the next message."""
    while True:
        async for piece in ws.stream():
            first = len(piece)
            break
        following = await ws.recv()
        await ws.send(json.dumps({"first": first, "next": len(following)}))


async def patient_echo(ws: Any) -> None:
    """Waits for each message at most 50 ms (asyncio.wait_for cancels recv() when it
    expires), says "timeout" once per silence, echoes what then arrives."""
    quiet = False
    while True:
        try:
            message = await asyncio.wait_for(ws.recv(), 0.05)
        except TimeoutError:
            if not quiet:
                await ws.send("timeout")
                quiet = True
            continue
        except Exception:  # the connection closed
            return
        quiet = False
        await ws.send(message)


async def two_readers(ws: Any) -> None:
    """A second recv() while one waits: report its error, then echo what the first got."""
    first = asyncio.ensure_future(ws.recv())
    await asyncio.sleep(0.01)
    try:
        await ws.recv()
    except RuntimeError as exc:
        await ws.send(f"refused: {exc}")
    await ws.send(await first)
