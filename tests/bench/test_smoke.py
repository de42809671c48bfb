"""Smoke test of the end-to-end benchmark harness (bench/): it runs, and it verifies echoes.

Seconds, not a measurement: tiny durations, no timing thresholds. The full matrix is
`python -m bench run` (see bench/README.md).
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.build import BuildError, build, compiler

REPO = Path(__file__).resolve().parents[2]
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

pytestmark = pytest.mark.skipif(compiler() is None, reason="bench/ needs a C compiler")


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short run of fastws and the raw TCP echo over small, large, idle and compressed
    scenarios."""
    out = tmp_path_factory.mktemp("bench")
    proc = run_bench(
        "run",
        "--servers", "fastws,raw-tcp",
        "--scenarios", "a,c,d,f,g",  # g: permessage-deflate
        "--duration", "0.2",
        "--warmup", "0.1",
        "--idle-conns", "40",
        "--idle-steps", "10,40",
        "--settle", "0.05",
        "--no-plots",
        "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out


def test_run_verifies_every_echo(smoke_run: Path) -> None:
    """The run succeeds, every echo is verified, and the table and JSON are written."""
    data = json.loads((smoke_run / "results.json").read_text())
    runs = {(r["scenario"], r["server"]): r for r in data["runs"]}
    for key in ("a", "c", "d"):
        for server in ("fastws", "raw-tcp"):
            run = runs[key, server]
            assert run["ok"], run
            assert run["loadgen"]["errors"] == 0
            assert run["loadgen"]["verified"] >= run["loadgen"]["msgs"] > 0
    idle = runs["f", "fastws"]
    assert idle["ok"], idle
    assert idle["loadgen"]["verified"] == 40  # one echo on each idle connection
    assert [p["conns"] for p in idle["idle_points"]] == [10, 40]
    assert idle["metrics"]["handshakes_per_s"] > 0
    assert runs["f", "raw-tcp"]["skipped"]  # no handshake to measure
    table = (smoke_run / "results.md").read_text()
    assert "| a) 64 B text, 1 conn, 1 in flight | msgs/s" in table
    assert "fastws / raw-tcp" in table


def test_compressed_scenario_negotiates_and_inflates(smoke_run: Path) -> None:
    """Scenario g runs compressed for real: fastws accepted the generator's permessage-deflate
    offer as made, its echoes came compressed and each inflated to the payload sent; the raw
    TCP echo's frames were inflated and compared too (the generator's limit in g)."""
    data = json.loads((smoke_run / "results.json").read_text())
    runs = {(r["scenario"], r["server"]): r for r in data["runs"]}
    fastws = runs["g", "fastws"]
    assert fastws["ok"], fastws
    lg = fastws["loadgen"]
    assert lg["deflate"] == "no-takeover"
    assert lg["extensions"].startswith("permessage-deflate")
    assert "server_no_context_takeover" in lg["extensions"]
    assert lg["errors"] == 0
    assert lg["verified"] >= lg["msgs"] > 0
    assert lg["compressed_echoes"] + lg["plain_echoes"] == lg["verified"]
    assert lg["compressed_echoes"] > 0
    assert lg["sent_wire_bytes"] < 0.6 * 1024  # the JSON payload really compresses
    assert 0 < fastws["metrics"]["echo_wire_ratio"] < 1
    raw = runs["g", "raw-tcp"]
    assert raw["ok"], raw
    assert raw["loadgen"]["compressed_echoes"] == raw["loadgen"]["verified"] > 0
    assert "| g) 1 KiB JSON text, permessage-deflate" in (smoke_run / "results.md").read_text()


def test_report_renders_plots_from_json(smoke_run: Path) -> None:
    """`python -m bench report DIR` draws the PNG plots and the table again from results.json."""
    pytest.importorskip("matplotlib")
    proc = run_bench("report", str(smoke_run))
    assert proc.returncode == 0, proc.stderr
    assert (smoke_run / "msgs_per_s.png").stat().st_size > 0
    assert (smoke_run / "rss.png").stat().st_size > 0
    assert "![rss.png](rss.png)" in (smoke_run / "results.md").read_text()


@pytest.fixture
def corrupting_echo() -> Iterator[int]:
    """A TCP echo for one connection that flips one bit of the 100th byte it echoes."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            seen = 0
            while data := conn.recv(65536):
                if seen <= 100 < seen + len(data):
                    data = bytearray(data)
                    data[100 - seen] ^= 1
                seen += len(data)
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    listener.close()
    thread.join(5)


def test_loadgen_reports_a_corrupted_echo(corrupting_echo: int) -> None:
    """The load generator compares echoes byte for byte: one flipped bit fails the run."""
    try:
        loadgen = build("loadgen")
    except BuildError as exc:  # pragma: no cover - the module is skipped without cc
        pytest.skip(str(exc))
    proc = subprocess.run(
        [str(loadgen), "--port", str(corrupting_echo), "--raw", "--conns", "1", "--depth", "4",
         "--size", "64", "--warmup", "0", "--duration", "0.3"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    result = json.loads(proc.stdout)
    assert result["errors"] == 1
    assert "differ" in result["error"]


def _loadgen(*args: str) -> dict[str, Any]:
    try:
        loadgen = build("loadgen")
    except BuildError as exc:  # pragma: no cover - the module is skipped without cc
        pytest.skip(str(exc))
    proc = subprocess.run(
        [str(loadgen), *args], capture_output=True, text=True, timeout=30, check=True
    )
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_loadgen_requires_permessage_deflate(start_server: Callable[..., Any]) -> None:
    """With --deflate, a server that leaves the offer unanswered fails the run: scenario g
    never reports uncompressed echoes as compressed ones."""
    server = start_server()  # compression off by default
    result = _loadgen("--port", str(server.port), "--deflate", "no-takeover", "--text",
                      "--size", "1024", "--warmup", "0", "--duration", "0.2")  # fmt: skip
    assert result["errors"] == 1
    assert "did not accept permessage-deflate" in result["error"]
    assert result["verified"] == 0


def _client_frame(buf: bytes) -> tuple[int, bytes, int] | None:
    """(opcode, unmasked payload, bytes used) of the first whole masked frame in buf."""
    if len(buf) < 2:
        return None
    l7 = buf[1] & 0x7F
    hl = 2 + {126: 2, 127: 8}.get(l7, 0)
    if len(buf) < hl:
        return None
    n = int.from_bytes(buf[2:hl], "big") if hl > 2 else l7
    if len(buf) < hl + 4 + n:
        return None
    mask = buf[hl : hl + 4]
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(buf[hl + 4 : hl + 4 + n]))
    return buf[0] & 0x0F, payload, hl + 4 + n


@pytest.fixture
def deflate_echo() -> Iterator[Callable[[bool], int]]:
    """start(corrupt) -> port: a minimal permessage-deflate echo (no context takeover) for one
    connection; with corrupt, it changes one byte of the third message before compressing it
    back, so that only inflating the echo shows the difference."""
    threads: list[threading.Thread] = []
    listeners: list[socket.socket] = []

    def serve(listener: socket.socket, corrupt: bool) -> None:
        conn, _ = listener.accept()
        with conn:
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += conn.recv(4096)
            head, buf = buf.split(b"\r\n\r\n", 1)
            key = next(
                line.split(b":", 1)[1].strip()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n"
                b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover;"
                b" client_no_context_takeover\r\n\r\n"
            )
            count = 0
            while True:
                frame = _client_frame(buf)
                if frame is None:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                    continue
                opcode, payload, used = frame
                buf = buf[used:]
                if opcode == 8:  # Close: the run is over
                    return
                text = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
                count += 1
                if corrupt and count == 3:
                    text = text[:100] + bytes([text[100] ^ 1]) + text[101:]
                comp = zlib.compressobj(6, zlib.DEFLATED, -15)
                out = (comp.compress(text) + comp.flush(zlib.Z_SYNC_FLUSH))[:-4]
                length = (
                    bytes([126]) + len(out).to_bytes(2, "big")
                    if len(out) > 125
                    else bytes([len(out)])
                )
                conn.sendall(bytes([0xC1]) + length + out)  # FIN, RSV1, text

    def start(corrupt: bool) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)
        thread = threading.Thread(target=serve, args=(listener, corrupt), daemon=True)
        thread.start()
        threads.append(thread)
        return int(listener.getsockname()[1])

    yield start
    for listener in listeners:
        listener.close()
    for thread in threads:
        thread.join(5)


@pytest.mark.parametrize("corrupt", [False, True], ids=["intact", "one-byte-changed"])
def test_loadgen_inflates_and_compares_compressed_echoes(
    deflate_echo: Callable[[bool], int], corrupt: bool
) -> None:
    """Compressed echoes are inflated and compared byte for byte with the payload sent: a
    changed byte that is only visible after inflating fails the run; intact ones all count."""
    port = deflate_echo(corrupt)
    result = _loadgen("--port", str(port), "--deflate", "no-takeover", "--text", "--size",
                      "1024", "--depth", "2", "--warmup", "0", "--duration", "0.2")  # fmt: skip
    if corrupt:
        assert result["errors"] == 1
        assert "inflated echo differs" in result["error"]
    else:
        assert result["errors"] == 0, result["error"]
        assert result["compressed_echoes"] == result["verified"] > 3
        assert result["extensions"].startswith("permessage-deflate")
