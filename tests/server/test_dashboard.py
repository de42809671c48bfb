"""The --dashboard page and its feed: served on the server's own port only when enabled, fed
from the same counters as /metrics, never counting its own viewers, closed to other sites.

What Chromium shows of it is tested in tests/browser/test_dashboard.py."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from typing import Any

import pytest
import websockets

from tests.process.helpers import http_get, metrics, wait_for, workers

NAMES = ("connections_open", "handshakes", "messages_in", "messages_out", "bytes_in", "bytes_out")


def test_dashboard_is_off_by_default(start_server: Any) -> None:
    """Without --dashboard, /dashboard is the application's like any other path."""
    server = start_server(workers=1)
    status, _, _ = http_get(server, "/dashboard")
    assert status == 400  # a plain GET that is not a WebSocket upgrade

    async def main() -> str:
        async with websockets.connect(server.url_for("/dashboard")) as ws:
            await ws.send("echo")
            return str(await ws.recv())

    assert asyncio.run(main()) == "echo"


def test_page_is_self_contained(start_server: Any) -> None:
    """One HTML page with inline script and style; its CSP allows nothing from elsewhere."""
    server = start_server(workers=1, dashboard=True)
    status, headers, body = http_get(server, "/dashboard")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    html = body.decode()
    assert "<script>" in html and "<style>" in html
    assert not re.search(r"\s(src|href)=\"(?!data:)", html), "the page loads nothing"
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", html), "no external address"
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "connect-src 'self'" in policy
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+';", policy)


def feed_figures(snapshot: dict[str, Any]) -> dict[tuple[str, str], int]:
    """{(worker slot or "total", counter or close code): value} from one feed snapshot."""
    figures = {}
    for part in [*snapshot["workers"], {"slot": "total", **snapshot["total"]}]:
        for name in NAMES:
            figures[(str(part["slot"]), name)] = part["counters"][name]
        for code, value in part["closes"].items():
            if value:
                figures[(str(part["slot"]), f"close {code}")] = value
    return figures


def metrics_figures(server: Any) -> dict[tuple[str, str], int]:
    """The same figures from GET /metrics (per worker slot; the total is their sum)."""
    figures: dict[tuple[str, str], int] = {}
    for (name, labels), value in metrics(server).items():
        label = dict(labels)
        if name == "fastws_closes_total":
            key = f"close {label['code']}"
        else:
            key = re.sub(r"^fastws_|_total$", "", name)
            if key not in NAMES:
                continue
        for who in (label["worker"], "total"):
            figures[(who, key)] = figures.get((who, key), 0) + int(value)
    return {k: v for k, v in figures.items() if v or not k[1].startswith("close ")}


def test_feed_shows_what_metrics_shows_and_not_itself(start_server: Any) -> None:
    """Per worker and in total, the feed's counters and close codes equal /metrics'; its own
    connection is not among them; rates are positive under traffic and fall to zero after."""
    server = start_server(workers=2, dashboard=True)
    pids = workers(server, 2)

    async def main() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        viewers = [await websockets.connect(server.url_for("/dashboard")) for _ in range(2)]
        clients = [await websockets.connect(server.url) for _ in range(6)]
        stop = asyncio.Event()

        async def echo(ws: Any) -> None:
            while not stop.is_set():
                await ws.send("x" * 100)
                await ws.recv()

        traffic = [asyncio.create_task(echo(ws)) for ws in clients]
        during = [json.loads(await viewers[0].recv()) for _ in range(3)]
        stop.set()
        await asyncio.gather(*traffic)
        await clients[0].close(4000, "custom")
        await clients[1].close(4001, "custom")
        await clients[2].close()
        # Quiet: the next snapshots must show zero rates and the figures of /metrics.
        deadline = time.monotonic() + 10
        while True:
            after = json.loads(await viewers[1].recv())
            quiet = after["total"]["rates"] and not any(after["total"]["rates"].values())
            if quiet and feed_figures(after) == metrics_figures(server):
                break
            assert time.monotonic() < deadline, (feed_figures(after), metrics_figures(server))
        for ws in [*clients[3:], *viewers]:
            await ws.close()
        return during, after

    during, after = asyncio.run(main())
    assert any(s["total"]["rates"] and s["total"]["rates"]["messages_in"] > 0 for s in during)
    assert {worker["pid"] for worker in after["workers"]} == pids
    total = after["total"]
    assert total["counters"]["connections_open"] == 3  # the clients left open, no viewer
    assert total["counters"]["handshakes"] == 6
    assert total["counters"]["messages_in"] == total["counters"]["messages_out"] > 0
    assert total["closes"]["1000"] == 1 and total["closes"]["other"] == 2
    assert all(worker["rss"] > 0 for worker in after["workers"])
    assert after["master"]["rss"] > 0
    assert total["rss"] == sum(w["rss"] for w in after["workers"]) + after["master"]["rss"]


@pytest.mark.parametrize("workers_option", [0, 1])
def test_feed_without_master_and_with_one(start_server: Any, workers_option: int) -> None:
    """A single process (--workers 0) has no scoreboard: the feed shows that process."""
    server = start_server(workers=workers_option, dashboard=True)

    async def main() -> dict[str, Any]:
        async with websockets.connect(server.url) as ws:
            for _ in range(5):
                await ws.send(b"\0" * 10)
                await ws.recv()
            async with websockets.connect(server.url_for("/dashboard")) as viewer:
                return await wait_for_figure(viewer, "messages_in", 5)

    async def wait_for_figure(viewer: Any, name: str, value: int) -> dict[str, Any]:
        while True:
            snapshot = json.loads(await asyncio.wait_for(viewer.recv(), 10))
            if snapshot["total"]["counters"][name] == value:
                return snapshot

    snapshot = asyncio.run(asyncio.wait_for(main(), 20))
    assert len(snapshot["workers"]) == 1
    assert snapshot["total"]["counters"]["connections_open"] == 1
    assert (snapshot["master"] is None) == (workers_option == 0)


def test_other_sites_cannot_open_the_feed(start_server: Any) -> None:
    """Another origin's page gets 403 (cross-site WebSocket hijacking); the page's own
    origin and clients without Origin are let in."""
    server = start_server(workers=1, dashboard=True)
    url = server.url_for("/dashboard")

    async def main() -> None:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(url, origin="http://evil.example")  # type: ignore[arg-type]
        assert refused.value.response.status_code == 403
        own = f"http://127.0.0.1:{server.port}"
        async with websockets.connect(url, origin=own) as ws:  # type: ignore[arg-type]
            assert json.loads(await ws.recv())["workers"]
        async with websockets.connect(url) as ws:
            assert json.loads(await ws.recv())["workers"]

    asyncio.run(main())
    assert "403 origin not allowed (dashboard)" in server.stderr()


def test_feed_takes_no_input(start_server: Any) -> None:
    """A viewer that sends a message is closed with 1008."""
    server = start_server(workers=1, dashboard=True)

    async def main() -> int | None:
        async with websockets.connect(server.url_for("/dashboard")) as ws:
            await ws.recv()
            await ws.send("hello")
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await ws.recv()
            return ws.close_code

    assert asyncio.run(main()) == 1008


def test_stopping_the_server_closes_viewers_with_1001(start_server: Any) -> None:
    """A viewer is one of the server's connections: TERM closes it like the others."""
    server = start_server(workers=1, dashboard=True)

    async def main() -> int | None:
        async with websockets.connect(server.url_for("/dashboard")) as ws:
            await ws.recv()
            server.signal(signal.SIGTERM)
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await ws.recv()
            return ws.close_code

    assert asyncio.run(main()) == 1001
    wait_for(lambda: not server.is_running(), what="server exit")


def test_viewers_are_never_pinged(start_server: Any) -> None:
    """A viewer needs no keepalive (WebSocket.stop_keepalive): with ping_interval at 0.2 s an
    ordinary connection is pinged, the dashboard's feed is not, across two snapshots (a
    second apart: five ping intervals)."""
    from tests.wire import WireClient

    server = start_server(workers=0, dashboard=True, ping_interval=0.2)
    with WireClient(server.port) as plain, WireClient(server.port) as viewer:
        plain.handshake("/")
        viewer.handshake("/dashboard", headers={"Origin": None})
        assert plain.recv_frame(timeout=5.0).opcode == 0x9
        opcodes = [viewer.recv_frame(timeout=5.0).opcode for _ in range(2)]
        assert opcodes == [0x1, 0x1]  # snapshots (text), no ping between them
