"""The access log and logging configuration (issue 18 item 10), on real server processes.

One line per connection when it ends (fastws.access): client, request line, status,
subprotocol, close code, duration, bytes in/out from the kernel's TCP counters. Off by
default; --log-format json makes every line a JSON object; --log-config takes a dictConfig
JSON file or an INI file, as uvicorn's does.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

from tests.conftest import REPO_ROOT, ServerFactory, ServerProcess
from tests.readme import blocks, serve_options

PAYLOAD = 100_000


def access_lines(server: ServerProcess, *paths: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The JSON access log lines of the server's stderr for `paths`, in that order (polled;
    the fixture's readiness probe, GET /healthz, has one too)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = {
            entry["path"]: entry
            for entry in (
                json.loads(line)
                for line in server.stderr().splitlines()
                if line.startswith("{") and '"fastws.access"' in line
            )
        }
        if all(path in lines for path in paths):
            return [lines[path] for path in paths]
        assert time.monotonic() < deadline, f"access lines for {paths}:\n{server.stderr()}"
        time.sleep(0.05)


def test_access_log_json_line_per_connection(start_server: ServerFactory) -> None:
    """A WebSocket's line has its client address, path (not the query, which may hold a
    token), 101, subprotocol, close code, duration and the bytes each way; a refused request
    gets its status. Bytes are the socket's: a 100 kB echo shows on both sides."""
    server = start_server(
        access_log=True, log_format="json", subprotocols=["chat"], compression="off"
    )
    with connect(server.url_for("/chat?token=s3cret"), subprotocols=["chat"]) as ws:
        client = ws.socket.getsockname()[:2]
        ws.send(os.urandom(PAYLOAD))
        assert len(ws.recv(timeout=10)) == PAYLOAD
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400 ")

    first, second = access_lines(server, "/chat", "/plain")
    assert first["logger"] == "fastws.access" and first["level"] == "INFO"
    assert first["client"] == f"{client[0]}:{client[1]}"
    assert (first["method"], first["path"], first["status"]) == ("GET", "/chat", 101)
    assert (first["subprotocol"], first["close_code"]) == ("chat", 1000)
    assert first["duration"] > 0
    assert PAYLOAD < first["bytes_in"] < PAYLOAD + 2000  # + request head, frame headers
    assert PAYLOAD < first["bytes_out"] < PAYLOAD + 2000
    assert "s3cret" not in server.stderr()
    assert (second["path"], second["status"], second["close_code"]) == ("/plain", 400, None)
    assert 0 < second["bytes_in"] < 100 and second["bytes_out"] > 0


def test_access_log_has_an_asgi_apps_plain_requests(start_server: ServerFactory) -> None:
    """Item 4/10 with an ASGI application: each plain HTTP request gets its line (several on
    one keep-alive connection, each with its own status and the socket's bytes since the
    previous line: a body the application read counts on its request's line), as do a
    request the HTTP front end refuses (431) and a WebSocket."""
    server = start_server(
        "tests.server.parity_apps:asgi_whoami", workers=0, access_log=True, log_format="json"
    )
    with httpx.Client(base_url=f"http://{server.host}:{server.port}", timeout=10) as client:
        assert client.get("/first?token=s3cret").status_code == 200
        assert client.post("/second", content=b"x" * PAYLOAD).status_code == 200
        client_address = client.get("/third").json()["client"]
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 20_000 + b"\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 431 ")
    with connect(server.url_for("/socket")) as ws:
        ws.recv(timeout=10)

    first, second, third, socket_line = access_lines(
        server, "/first", "/second", "/third", "/socket"
    )
    for line, method in ((first, "GET"), (second, "POST"), (third, "GET")):
        assert (line["method"], line["status"], line["close_code"]) == (method, 200, None)
        assert line["client"] == "{}:{}".format(*client_address)  # one connection
        assert 0 < line["bytes_out"] < 1000
    assert first["bytes_in"] < 1000 and third["bytes_in"] < 1000
    assert PAYLOAD < second["bytes_in"] < PAYLOAD + 1000  # its body, not the others'
    assert "s3cret" not in server.stderr()
    assert (socket_line["status"], socket_line["close_code"]) == (101, 1000)
    [refused] = [
        json.loads(line)
        for line in server.stderr().splitlines()
        if '"fastws.access"' in line and '"status": 431' in line
    ]
    assert refused["path"] is None and refused["bytes_in"] > 20_000 and refused["bytes_out"] > 0


def test_access_log_is_off_by_default_and_text_when_on(start_server: ServerFactory) -> None:
    """No access line unless asked for; the text form is one readable line."""
    quiet = start_server(workers=0)
    loud = start_server(workers=0, access_log=True)
    for server in (quiet, loud):
        with connect(server.url_for("/x")) as ws:
            ws.send("hi")
            ws.recv(timeout=10)
    logs = loud.wait_for_log('"GET /x"')
    access = next(text for text in logs.splitlines() if '"GET /x"' in text)
    assert " INFO fastws.access: 127.0.0.1:" in access
    assert '"GET /x" 101 subprotocol=- close=1000 duration=' in access
    quiet.stop()
    assert "fastws.access" not in quiet.stderr()


def test_readme_logging_examples(start_server: ServerFactory, tmp_path: Path) -> None:
    """The README's command line gives JSON access lines with the fields its sample shows,
    and its --log-config JSON file (dictConfig) sends the access log to its own file."""
    [command] = blocks("Logging and the access log", "sh")
    sample, settings = (json.loads(block) for block in blocks("Logging and the access log", "json"))
    server = start_server(**serve_options(command))
    with connect(server.url_for("/chat")) as ws:
        ws.send("x")
        ws.recv(timeout=10)
    [line] = access_lines(server, "/chat")
    assert set(line) == set(sample)

    target = tmp_path / "access.log"
    settings["handlers"]["access"]["filename"] = str(target)
    config = tmp_path / "logging.json"
    config.write_text(json.dumps(settings))
    server = start_server(access_log=True, log_config=str(config))
    with connect(server.url_for("/feed")) as ws:
        port = ws.socket.getsockname()[1]
    deadline = time.monotonic() + 10
    while f" 127.0.0.1:{port} /feed 101 1000 " not in (
        target.read_text() if target.exists() else ""
    ):
        assert time.monotonic() < deadline, target.read_text() if target.exists() else "no file"
        time.sleep(0.05)
    assert "fastws.access" not in server.stderr()


def test_log_config_ini_file(start_server: ServerFactory, tmp_path: Path) -> None:
    """--log-config FILE.ini (any other name) goes through logging.config.fileConfig."""
    config = tmp_path / "logging.ini"
    config.write_text(
        "[loggers]\nkeys=root,fastws\n[handlers]\nkeys=err\n[formatters]\nkeys=f\n"
        "[logger_root]\nhandlers=\n[logger_fastws]\nlevel=INFO\nhandlers=err\nqualname=fastws\n"
        "[handler_err]\nclass=StreamHandler\nformatter=f\nargs=(sys.stderr,)\n"
        "[formatter_f]\nformat=INI %(name)s %(message)s\n"
    )
    server = start_server(access_log=True, log_config=str(config))
    with connect(server.url) as ws:
        ws.send("x")
    server.wait_for_log("INI fastws.access 127.0.0.1:")
    assert "INI fastws listening on" in server.stderr()


def test_unusable_log_config_is_one_line_and_exit_status_2(tmp_path: Path) -> None:
    """A missing or malformed log config file: one line naming the option, status 2."""
    bad = tmp_path / "logging.json"
    bad.write_text("{not json")
    for path in (bad, tmp_path / "missing.ini"):
        result = subprocess.run(
            [sys.executable, "-m", "fastws", "serve", "--workers", "0", "--log-config", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=REPO_ROOT,
        )
        assert result.returncode == 2
        [line] = result.stderr.strip().splitlines()
        assert (
            line.startswith("fastws serve: error: log_config (--log-config") and str(path) in line
        )
