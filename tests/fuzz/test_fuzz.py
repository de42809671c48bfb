"""The fuzz targets: run on fixed seeds always, and under atheris for a few seconds if it is
installed. The long run is `python -m tests.fuzz.fuzz_protocol -max_total_time=600`."""

from __future__ import annotations

import importlib.util
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.targets import one_input

REPO_ROOT = Path(__file__).resolve().parents[2]


def masked_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + b"\x00\x00\x00\x00" + payload


SEEDS = [
    masked_frame(1, b"hello") + masked_frame(2, b"x" * 20_000) + masked_frame(8, b"\x03\xe8"),
    masked_frame(1, b"\xce", fin=False) + masked_frame(9, b"p") + masked_frame(0, b"\xba"),
    masked_frame(2, b"a", fin=False) + masked_frame(0, b"b", fin=False) * 20,
    b"\x82\xff" + b"\xff" * 8 + b"\x00" * 4,  # 2^64-1 declared
    b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    b"GET /" + b"a" * 600 + b" HTTP/1.1\r\n\r\n",
]


@pytest.mark.parametrize("seed", range(len(SEEDS)))
@pytest.mark.parametrize("mode", [0x00, 0x01, 0x02, 0x80])
@pytest.mark.parametrize("step", [1, 3, 200, 255])
def test_target_on_seeds(seed: int, mode: int, step: int) -> None:
    """Every target, on hand-made inputs split at many boundaries, keeps its invariants."""
    one_input(bytes([mode, step]) + SEEDS[seed])


def test_target_on_random_mutations() -> None:
    """400 random mutations of the seeds (fixed RNG): no unexpected exception."""
    rng = random.Random(7692)
    for _ in range(400):
        data = bytearray(rng.choice(SEEDS))
        for _ in range(rng.randint(1, 8)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        one_input(bytes([rng.randrange(256), rng.randrange(256)]) + bytes(data))


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_atheris_short_run(tmp_path: Path) -> None:
    """A bounded coverage-guided run (5 s) finds no crash. Crash inputs land in tmp_path."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run(
        # -rss_limit_mb=0: libFuzzer reads its RSS from getrusage's ru_maxrss, which Linux
        # carries over fork and exec, so a pytest process that once peaked above 2 GB (the
        # large-message tests) would fail this run as "out-of-memory" before it starts.
        [
            sys.executable,
            "-m",
            "tests.fuzz.fuzz_protocol",
            "-max_total_time=5",
            "-seed=1",
            "-rss_limit_mb=0",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Done" in result.stderr, result.stderr[-2000:]
