"""Smoke test of the end-to-end benchmark harness (bench/): it runs, and it verifies echoes.

Seconds, not a measurement: tiny durations, no timing thresholds. The full matrix is
`python -m bench run` (see bench/README.md).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.build import BuildError, build, compiler

REPO = Path(__file__).resolve().parents[2]

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
    """One short run of fastws and the raw TCP echo over small, large and idle scenarios."""
    out = tmp_path_factory.mktemp("bench")
    proc = run_bench(
        "run",
        "--servers", "fastws,raw-tcp",
        "--scenarios", "a,c,d,f,g",
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
    assert runs["g", "fastws"]["skipped"]  # compression is not there yet
    table = (smoke_run / "results.md").read_text()
    assert "| a) 64 B text, 1 conn, 1 in flight | msgs/s" in table
    assert "fastws / raw-tcp" in table


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
