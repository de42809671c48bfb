"""The servers the end-to-end benchmark compares: how to start each one's echo server.

Every peer runs its own echo server in its recommended fast configuration (the scripts in
this directory); settings that would make the comparison unfair are equal for all:
compression off, no keepalive pings, no message size limit that the matrix would hit,
listen backlog 2048.
"""

from __future__ import annotations

import functools
import importlib.util
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable


@dataclass(frozen=True)
class ServerSpec:
    """One server of the matrix."""

    name: str
    description: str
    #: (host, port, helper binaries by name) -> argv
    command: Callable[[str, int, dict[str, Path]], list[str]]
    #: False for the raw TCP echo: no handshake, the generator expects its frames back as sent
    websocket: bool = True
    #: Python modules it needs; a server whose modules are missing is reported, not run
    modules: tuple[str, ...] = ()
    #: optional features ("compression" once fastws has it): scenarios that need one skip
    #: the servers without it
    features: frozenset[str] = field(default_factory=frozenset)

    def missing(self) -> list[str]:
        return [m for m in self.modules if importlib.util.find_spec(m) is None]


@functools.cache
def fastws_has_workers() -> bool:
    """True once `fastws serve` has --workers (then the bench runs 1 worker per server core)."""
    out = subprocess.run(
        [PY, "-m", "fastws", "serve", "--help"], capture_output=True, text=True, check=False
    ).stdout
    return "--workers" in out


def _fastws(host: str, port: int, _bins: dict[str, Path]) -> list[str]:
    argv = [PY, "-m", "fastws", "serve", "--host", host, "--port", str(port)]
    argv += ["--max-message-size", str(64 << 20), "--ping-interval", "off"]
    argv += ["--backlog", "2048", "--log-level", "warning"]
    if fastws_has_workers():
        argv += ["--workers", "1"]
    return argv


def _script(name: str, *extra: str) -> Callable[[str, int, dict[str, Path]], list[str]]:
    def command(host: str, port: int, _bins: dict[str, Path]) -> list[str]:
        return [PY, str(HERE / name), str(port), "--host", host, *extra]

    return command


def _raw(host: str, port: int, bins: dict[str, Path]) -> list[str]:
    return [str(bins["echo"]), str(port), host]


SERVERS: dict[str, ServerSpec] = {
    s.name: s
    for s in (
        ServerSpec(
            "fastws",
            "fastws serve (built-in echo app, uvloop, one process)",
            _fastws,
            modules=("fastws", "uvloop"),
        ),
        ServerSpec(
            "websockets",
            "websockets (asyncio implementation) on asyncio's default loop",
            _script("websockets_echo.py"),
            modules=("websockets",),
        ),
        ServerSpec(
            "websockets-uvloop",
            "websockets (asyncio implementation) on uvloop",
            _script("websockets_echo.py", "--uvloop"),
            modules=("websockets", "uvloop"),
        ),
        ServerSpec(
            "aiohttp",
            "aiohttp web server on uvloop",
            _script("aiohttp_echo.py"),
            modules=("aiohttp", "uvloop"),
        ),
        ServerSpec(
            "picows",
            "picows (Cython) on uvloop, echoing frames from its read buffer",
            _script("picows_echo.py"),
            modules=("picows", "uvloop"),
        ),
        ServerSpec(
            "raw-tcp",
            "C epoll TCP echo (no WebSocket): the physical limit of loopback here",
            _raw,
            websocket=False,
        ),
    )
}

#: servers that are not fastws and not the physical limit: "the peers" of the ratios
PEER_EXCLUDE = frozenset({"fastws", "raw-tcp"})
