"""bench's client shapes and multi-process peers: the generator frames and verifies as each
shape says, and `--workers 2` runs every server as two serving processes.

Seconds, not a measurement: tiny durations, no timing thresholds.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.build import build, compiler

from .test_smoke import run_bench

pytestmark = pytest.mark.skipif(compiler() is None, reason="bench/ needs a C compiler")


@pytest.fixture
def recording_echo() -> Iterator[tuple[int, bytearray]]:
    """A TCP echo for one connection that also keeps every byte it received."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen = bytearray()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            while data := conn.recv(65536):
                seen.extend(data)
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], seen
    listener.close()
    thread.join(5)


def frames(data: bytes) -> list[tuple[int, int, int]]:
    """(FIN, opcode, payload length) of each whole masked client frame in `data`."""
    out, pos = [], 0
    while pos + 2 <= len(data):
        b0, b1 = data[pos], data[pos + 1]
        assert b1 & 0x80, "client frames are masked"
        n, pos = b1 & 0x7F, pos + 2
        if n >= 126:
            width = 2 if n == 126 else 8
            n, pos = int.from_bytes(data[pos : pos + width], "big"), pos + width
        if pos + 4 + n > len(data):
            break
        out.append((b0 >> 7, b0 & 0x0F, n))
        pos += 4 + n
    return out


def test_chromium_shape_sends_131000_byte_fragments(
    recording_echo: tuple[int, bytearray],
) -> None:
    """--frag 131000: each 300,000-byte message leaves as BINARY 131,000 + CONT 131,000 +
    CONT 38,000 (FIN on the last only), and the echo of those frames is verified."""
    port, seen = recording_echo
    proc = subprocess.run(
        [
            str(build("loadgen")),
            "--port",
            str(port),
            "--raw",
            "--size",
            "300000",
            "--warmup",
            "0",
            "--duration",
            "0.2",
            "--frag",
            "131000",
            "--write-chunk",
            "131014",
            "--read-size",
            "4096",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["errors"] == 0 and result["verified"] > 0, result
    assert (result["frag"], result["write_chunk"], result["read_size"]) == (131000, 131014, 4096)
    message = [(0, 2, 131000), (0, 0, 131000), (1, 0, 38000)]
    sent = frames(bytes(seen))
    assert sent[:6] == message * 2


def test_shapes_run_as_scenarios_of_their_own(tmp_path: Path) -> None:
    """`--client-shape default,chromium,frag-16k` runs d three times per server; fastws (and
    picows-assembled, when picows is installed) reassemble the fragments and every echo is
    verified; the table has a row per shape."""
    servers = ["fastws", "raw-tcp"]
    if importlib.util.find_spec("picows") is not None:
        servers.append("picows-assembled")
    proc = run_bench(
        "run", "--servers", ",".join(servers), "--scenarios", "d",
        "--client-shape", "default,chromium,frag-16k",
        "--duration", "0.2", "--warmup", "0.1", "--no-plots", "--out", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "results.json").read_text())
    runs = {(r["scenario"], r["server"]): r for r in data["runs"]}
    shapes = ("d", "d@chromium", "d@frag-16k")
    assert set(runs) == {(s, v) for s in shapes for v in servers}
    for run in runs.values():
        assert run["ok"], run
        assert run["loadgen"]["verified"] >= run["loadgen"]["msgs"] > 0
    assert runs["d@chromium", "fastws"]["loadgen"]["frag"] == 131000
    assert runs["d@frag-16k", "fastws"]["loadgen"]["frag"] == 16384
    table = (tmp_path / "results.md").read_text()
    assert "| d@chromium) 1 MiB binary, 4 conns x 1 in flight, client chromium |" in table


def test_two_workers_run_every_peer_as_two_serving_processes(tmp_path: Path) -> None:
    """--workers 2: fastws with two workers, picows and aiohttp as two SO_REUSEPORT processes
    each; both processes of each served connections (used CPU); one-process peers are n/a."""
    pytest.importorskip("picows")
    pytest.importorskip("aiohttp")
    proc = run_bench(
        "run", "--servers", "fastws,picows,aiohttp,websockets", "--scenarios", "b",
        "--workers", "2", "--duration", "0.3", "--warmup", "0.1", "--no-plots",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "results.json").read_text())
    runs = {r["server"]: r for r in data["runs"]}
    assert runs["websockets"]["skipped"] == "no multi-process mode"
    for name in ("fastws", "picows", "aiohttp"):
        run = runs[name]
        assert run["ok"], run
        busy = [c for c in run["server_stats"]["cpu_by_process"].values() if c > 0.02]
        assert len(busy) >= 2, (name, run["server_stats"])
    assert "**2 server processes**" in (tmp_path / "results.md").read_text()


def test_large_receive_assembles_every_fragment_size(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m bench.large_receive` feeds the protocol core one message per fragment size
    and reports each (it checks nothing itself: the test checks the messages are whole)."""
    from bench import large_receive
    from fastws.buffers import Budget, RegionCache
    from fastws.message import Message

    payload = bytes(range(256)) * 9000  # 2.3 MB
    for frag in (0, 131_000, 16_384):
        conn = large_receive.server_connection(Budget(1 << 30, RegionCache(64 << 20)))
        message = large_receive.receive(conn, large_receive.frames(payload, frag), 131_000)
        assert isinstance(message, Message) and message.data == payload
        message.release()
    large_receive.main(["--size", "2MiB", "--rounds", "1", "--frag", "0,131000"])
    out = capsys.readouterr().out
    assert "one frame" in out and "131,000-byte frames" in out
    # --asgi: assembled into the bytes delivered (BytesAssembler): one frame, and fragments
    # from 64 KiB on; smaller first fragments in a region, copied at delivery
    budget = Budget(1 << 30, RegionCache(64 << 20))
    for frag in (0, 131_000, 16_384, 1000):
        conns = [large_receive.server_connection(budget, "bytes") for _ in range(3)]
        feeds = [
            large_receive.reads(conn, large_receive.frames(payload, frag), 65_536) for conn in conns
        ]
        received = []
        while feeds:
            for feed in list(feeds):
                message = next(feed)
                if message is not None:
                    received.append(message)
                    feeds.remove(feed)
        for message in received:
            assert isinstance(message, Message)  # charged until delivered
            with message:
                into_bytes = hasattr(message.buffer, "take")
                data = message.buffer.take() if into_bytes else bytes(message)
            assert into_bytes == (frag == 0 or frag >= 65_536)
            assert type(data) is bytes and data == payload
    assert budget.held == 0
    large_receive.main(
        ["--asgi", "--conns", "2", "--size", "2MiB", "--rounds", "1", "--frag", "0,131000"]
    )
    assert "131,000-byte frames" in capsys.readouterr().out


def test_fastws_tree_runs_another_checkout_beside_this_one(tmp_path: Path) -> None:
    """--fastws-tree DIR adds server fastws-tree (fastws from DIR, here this checkout) to run
    beside fastws in the same run; a directory without fastws/ is refused."""
    repo = Path(__file__).resolve().parents[2]
    proc = run_bench(
        "run", "--fastws-tree", str(repo), "--servers", "fastws,fastws-tree",
        "--scenarios", "a", "--duration", "0.2", "--warmup", "0.1", "--no-plots",
        "--out", str(tmp_path / "ab"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "ab" / "results.json").read_text())
    runs = {r["server"]: r for r in data["runs"]}
    assert runs["fastws-tree"]["ok"] and runs["fastws"]["ok"], runs
    assert str(repo) in data["meta"]["servers"]["fastws-tree"]
    refused = run_bench("run", "--fastws-tree", str(tmp_path), "--servers", "fastws-tree")
    assert refused.returncode == 2 and "no fastws/ package" in refused.stdout


def test_fastws_tree_adds_the_asgi_servers_of_that_tree(tmp_path: Path) -> None:
    """--fastws-tree DIR also adds fastws-asgi-tree and fastws-asgi-zc-tree: the same ASGI
    servers with DIR first on PYTHONPATH (then this checkout, for the app) and `python -P`
    (the working directory off sys.path), so fastws is imported from DIR."""
    from bench.servers import PEER_EXCLUDE, SERVERS, fastws_asgi_trees

    specs = {s.name: s for s in fastws_asgi_trees(tmp_path)}
    assert set(specs) == {"fastws-asgi-tree", "fastws-asgi-zc-tree"} <= PEER_EXCLUDE
    for name, spec in specs.items():
        argv = spec.argv("127.0.0.1", 9999, {}, None)
        base = SERVERS[name.removesuffix("-tree")].argv("127.0.0.1", 9999, {}, None)
        assert argv[1] == f"PYTHONPATH={tmp_path.resolve()}:{base[1].split('=', 1)[1]}"
        assert argv[3] == "-P" and argv[4:] == base[3:]
