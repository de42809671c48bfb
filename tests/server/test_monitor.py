"""/metrics, /healthz and /dashboard: off, or on a separate host:port (issue 18 item 2).

Real server processes; plain HTTP over raw sockets, the dashboard's feed with the
websockets client.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.conftest import REPO_ROOT, ServerFactory, free_port
from tests.server.test_hooks import APPS, http_get


class Port:
    """host and port of a listening address, as http_get takes a server."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port


def test_each_endpoint_can_be_turned_off(start_server: ServerFactory) -> None:
    """metrics=off and healthz=off: the paths are the application's again (400 for a plain
    GET to a fastws handler), where they answered 200."""
    server = start_server(workers=0, metrics="off", healthz="off")
    assert http_get(server, "/metrics")[0] == 400
    assert http_get(server, "/healthz")[0] == 400
    default = start_server(workers=0)
    assert http_get(default, "/metrics")[0] == 200


@pytest.mark.parametrize("workers", [0, 2])
def test_monitor_address_serves_them_apart(start_server: ServerFactory, workers: int) -> None:
    """monitor_address: /metrics, /healthz and the dashboard move to that port, without the
    application's hook (the gatekeeper would want a token); the application's port no longer
    has them; any other path there is 404. Every worker listens on it."""
    monitor = Port("127.0.0.1", free_port())
    server = start_server(
        f"{APPS}:report_user",
        workers=workers,
        dashboard=True,
        process_request=f"{APPS}:gatekeeper",
        monitor_address=f"{monitor.host}:{monitor.port}",
    )
    server.wait_for_log(f"monitoring on http://{monitor.host}:{monitor.port}")
    with connect(server.url) as ws:  # traffic on the application's port, counted
        ws.recv(timeout=10)
    for _ in range(4):  # with 2 workers, the kernel spreads these over both
        status, body = http_get(monitor, "/metrics")
        assert status == 200 and b"fastws_handshakes_total" in body
    status, body = http_get(monitor, "/healthz")
    assert status == 200 and json.loads(body)["status"]
    assert http_get(monitor, "/dashboard")[0] == 200
    with connect(f"ws://{monitor.host}:{monitor.port}/dashboard") as feed:
        assert "workers" in json.loads(feed.recv(timeout=10))
    assert http_get(monitor, "/")[0] == 404
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://{monitor.host}:{monitor.port}/")
    assert refused.value.response.status_code == 404
    assert http_get(server, "/metrics", "Authorization: Bearer s3cret")[0] == 400
    assert http_get(server, "/dashboard")[0] == 400


@pytest.mark.parametrize("reuseport", [False, True])
@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_busy_monitor_address_fails_at_start(reuseport: bool, workers: str) -> None:
    """Like the application's port (issue 18 item 1), the monitoring port is not shared with
    another listener, even one with SO_REUSEPORT: one line naming the option, exit 1."""
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        address = f"127.0.0.1:{other.getsockname()[1]}"
        result = subprocess.run(
            [sys.executable, "-m", "fastws", "serve", "--port", "0", "--workers", workers,
             "--monitor-address", address],
            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
        )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert f"--monitor-address {address}: Address already in use" in result.stderr
