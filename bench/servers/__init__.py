"""The servers the end-to-end benchmark compares: how to start each one's echo server.

Every peer runs its own echo server in its recommended fast configuration (the scripts in
this directory); settings that would make the comparison unfair are equal for all:
compression off (on only for the compressed scenarios, for the servers that have it), no
keepalive pings, no message size limit that the matrix would hit, listen backlog 2048.
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
#: permessage-deflate with the offer's parameters honoured (scenarios g and h)
DEFLATE = frozenset({"compression", "server_no_context_takeover"})


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
    #: optional features ("compression": permessage-deflate; "server_no_context_takeover":
    #: honours that parameter of an offer); scenarios that need one skip the servers without
    #: it (the report shows n/a)
    features: frozenset[str] = field(default_factory=frozenset)
    #: deflate mode of a compressed scenario ("no-takeover", "server-takeover") -> the
    #: arguments that turn compression on
    compression_args: Callable[[str], tuple[str, ...]] = lambda _mode: ()
    #: number of processes -> the arguments that run that many (None: one process only)
    workers_args: Callable[[int], tuple[str, ...]] | None = None

    def argv(
        self,
        host: str,
        port: int,
        bins: dict[str, Path],
        deflate: str | None,
        workers: int = 1,
    ) -> list[str]:
        """The command line; with `deflate` (a compressed scenario's mode) compression on;
        `workers` > 1: that many server processes."""
        argv = self.command(host, port, bins)
        if deflate:
            argv += self.compression_args(deflate)
        if workers > 1 and self.workers_args is not None:
            argv += self.workers_args(workers)
        return argv

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


def _fastws_coroutine(host: str, port: int, bins: dict[str, Path]) -> list[str]:
    """The same server with the coroutine echo (`async for` + `await ws.send`) instead of the
    built-in callback-style Echo: what an ordinary handler costs."""
    argv = _fastws(host, port, bins)
    argv.insert(argv.index("serve") + 1, "fastws.apps.echo:echo")
    return argv


def _fastws_compression(mode: str) -> tuple[str, ...]:
    """Default settings (level 1, window 15); server-takeover lets it keep its context."""
    args: tuple[str, ...] = ("--compression", "deflate")
    if mode == "server-takeover":
        args += ("--compression-context-takeover", "server")
    return args


def _fastws_workers(n: int) -> tuple[str, ...]:
    """The last --workers wins: the master forks n workers, each with its own SO_REUSEPORT
    socket (fastws' default --socket-mode)."""
    return ("--workers", str(n))


def _processes(n: int) -> tuple[str, ...]:
    """A peer's script with n processes, each its own server on its own SO_REUSEPORT
    socket (bench/servers/multiproc.py): how picows and aiohttp are run on several cores."""
    return ("--processes", str(n))


def _script(name: str, *extra: str) -> Callable[[str, int, dict[str, Path]], list[str]]:
    def command(host: str, port: int, _bins: dict[str, Path]) -> list[str]:
        return [PY, str(HERE / name), str(port), "--host", host, *extra]

    return command


def _raw(host: str, port: int, bins: dict[str, Path]) -> list[str]:
    return [str(bins["echo"]), str(port), host]


REPO = HERE.parent.parent
#: the Starlette echo app every ASGI server runs (bench/servers/starlette_echo.py)
ASGI_APP = "bench.servers.starlette_echo:app"


def _asgi(*argv: str) -> Callable[[str, int, dict[str, Path]], list[str]]:
    """An ASGI server's command ({host}, {port} filled in), the repository on PYTHONPATH."""

    def command(host: str, port: int, _bins: dict[str, Path]) -> list[str]:
        return ["env", f"PYTHONPATH={REPO}"] + [a.format(host=host, port=port) for a in argv]

    return command


def _fastws_asgi(app: str) -> Callable[[str, int, dict[str, Path]], list[str]]:
    return _asgi(
        PY, "-m", "fastws", "serve", app, "--host", "{host}", "--port", "{port}",
        "--workers", "1", "--max-message-size", str(64 << 20), "--ping-interval", "off",
        "--backlog", "2048", "--log-level", "warning",
    )  # fmt: skip


def _uvicorn(ws: str) -> Callable[[str, int, dict[str, Path]], list[str]]:
    return _asgi(
        PY, "-m", "uvicorn", ASGI_APP, "--host", "{host}", "--port", "{port}",
        "--loop", "uvloop", "--http", "httptools", "--ws", ws,
        "--ws-max-size", str(64 << 20), "--ws-ping-interval", "86400",
        "--ws-per-message-deflate", "false", "--backlog", "2048", "--log-level", "warning",
        "--no-access-log",
    )  # fmt: skip


def _workers_flag(n: int) -> tuple[str, ...]:
    """`--workers n` after the command's own (the last one wins): fastws's master forks n
    workers; uvicorn starts a supervisor and n processes on one shared socket; Hypercorn and
    Granian n workers."""
    return ("--workers", str(n))


#: The ASGI servers: the same Starlette app on each (not in the default matrix).
ASGI_SERVERS: tuple[ServerSpec, ...] = (
    ServerSpec(
        "fastws-asgi",
        "fastws serve running the Starlette echo app (ASGI), one worker",
        _fastws_asgi(ASGI_APP),
        modules=("fastws", "starlette"),
        workers_args=_workers_flag,
    ),
    ServerSpec(
        "fastws-asgi-zc",
        "the same app with fastws's zero-copy extension (binary messages as views, no copy)",
        _fastws_asgi("bench.servers.starlette_echo:zero_copy_app"),
        modules=("fastws", "starlette"),
        workers_args=_workers_flag,
    ),
    ServerSpec(
        "fastws-asgi-raw",
        "fastws serve running the same echo as a bare ASGI callable (no Starlette): with"
        " fastws-asgi, what Starlette's layer costs per message",
        _fastws_asgi("bench.servers.starlette_echo:raw_app"),
        modules=("fastws",),
        workers_args=_workers_flag,
    ),
    ServerSpec(
        "uvicorn-websockets",
        "uvicorn (uvloop, httptools, its websockets implementation), one process",
        _uvicorn("websockets"),
        modules=("uvicorn", "websockets", "httptools", "uvloop", "starlette"),
        workers_args=_workers_flag,
    ),
    ServerSpec(
        "uvicorn-websockets-sansio",
        "uvicorn (uvloop, httptools, websockets' Sans-I/O core: uvicorn's default, --ws auto)",
        _uvicorn("websockets-sansio"),
        modules=("uvicorn", "websockets", "httptools", "uvloop", "starlette"),
        workers_args=_workers_flag,
    ),
    ServerSpec(
        "uvicorn-wsproto",
        "uvicorn (uvloop, httptools, its wsproto implementation), one process",
        _uvicorn("wsproto"),
        modules=("uvicorn", "wsproto", "httptools", "uvloop", "starlette"),
        workers_args=_workers_flag,
    ),
    ServerSpec(
        "hypercorn",
        "Hypercorn (uvloop worker), one worker (--workers N: its own N worker processes)",
        _asgi(
            PY,
            "-m",
            "hypercorn",
            ASGI_APP,
            "--bind",
            "{host}:{port}",
            "--config",
            "python:bench.servers.hypercorn_conf",
        ),
        modules=("hypercorn", "uvloop", "starlette"),
        workers_args=_workers_flag,
    ),
    ServerSpec(
        "granian",
        "Granian (Rust, ASGI interface, uvloop), one worker (--workers N: its own N)",
        _asgi(
            PY,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--host",
            "{host}",
            "--port",
            "{port}",
            "--workers",
            "1",
            "--loop",
            "uvloop",
            "--backlog",
            "2048",
            "--log-level",
            "warning",
            "--no-access-log",
            ASGI_APP,
        ),
        modules=("granian", "uvloop", "starlette"),
        workers_args=_workers_flag,
    ),
)

SERVERS: dict[str, ServerSpec] = {
    s.name: s
    for s in (
        ServerSpec(
            "fastws",
            "fastws serve (built-in echo app, uvloop, one process)",
            _fastws,
            modules=("fastws", "uvloop"),
            features=DEFLATE,
            compression_args=_fastws_compression,
            workers_args=_fastws_workers,
        ),
        ServerSpec(
            "fastws-coroutine",
            "fastws serve fastws.apps.echo:echo (a coroutine handler; uvloop, one process)",
            _fastws_coroutine,
            modules=("fastws", "uvloop"),
            features=DEFLATE,
            compression_args=_fastws_compression,
            workers_args=_fastws_workers,
        ),
        ServerSpec(
            "websockets",
            "websockets (asyncio implementation) on asyncio's default loop",
            _script("websockets_echo.py"),
            modules=("websockets",),
            features=DEFLATE,
            compression_args=lambda _mode: ("--compression",),
        ),
        ServerSpec(
            "websockets-uvloop",
            "websockets (asyncio implementation) on uvloop",
            _script("websockets_echo.py", "--uvloop"),
            modules=("websockets", "uvloop"),
            features=DEFLATE,
            compression_args=lambda _mode: ("--compression",),
        ),
        ServerSpec(
            "aiohttp",
            "aiohttp web server on uvloop",
            _script("aiohttp_echo.py"),
            modules=("aiohttp", "uvloop"),
            features=DEFLATE,
            compression_args=lambda _mode: ("--compression",),
            workers_args=_processes,
        ),
        ServerSpec(
            "tornado",
            "Tornado's WebSocketHandler on uvloop",
            _script("tornado_echo.py"),
            modules=("tornado", "uvloop"),
            # Tornado 6.6 drops valueless parameters when it parses an offer, so it never
            # answers (or honours) server_no_context_takeover: n/a in g, runs in h.
            features=frozenset({"compression"}),
            compression_args=lambda _mode: ("--compression",),
        ),
        ServerSpec(
            "picows",
            "picows (Cython) on uvloop, echoing frames from its read buffer",
            _script("picows_echo.py"),
            modules=("picows", "uvloop"),  # no permessage-deflate: n/a in scenario g
            workers_args=_processes,
        ),
        ServerSpec(
            "picows-assembled",
            "picows echoing whole messages (fragments gathered until FIN), not frame by frame",
            _script("picows_echo.py", "--assemble"),
            modules=("picows", "uvloop"),
            workers_args=_processes,
        ),
        ServerSpec(
            "raw-tcp",
            "C epoll TCP echo (no WebSocket): the physical limit of loopback here",
            _raw,
            websocket=False,
            # Echoes the compressed frames as sent; the generator inflates each one as it
            # would a server's echo: the generator's own limit in the compressed scenarios.
            features=DEFLATE,
            # N processes, each its own SO_REUSEPORT socket (echo PORT HOST N): the ceiling
            # of the --workers N runs too
            workers_args=lambda n: (str(n),),
        ),
        ServerSpec(
            "uvloop-protocol",
            "Python raw TCP echo on uvloop's transport (BufferedProtocol, no WebSocket): the"
            " floor of a Python server on uvloop",
            _script("uvloop_echo.py"),
            websocket=False,
            modules=("uvloop",),
            workers_args=_processes,
        ),
        ServerSpec(
            "uvloop-reader",
            "Python raw TCP echo, a transport of its own on uvloop's loop (add_reader,"
            " recv_into, send; no WebSocket)",
            _script("uvloop_echo.py", "--reader"),
            websocket=False,
            modules=("uvloop",),
            workers_args=_processes,
        ),
    )
}

#: floors, not peers: run only when asked for (--servers ...,uvloop-protocol,uvloop-reader)
FLOORS = frozenset({"uvloop-protocol", "uvloop-reader"})
#: the servers `python -m bench run` runs unless --servers says otherwise (not the ASGI ones)
#: (picows-assembled only matters with fragmenting client shapes: --client-shape chromium)
DEFAULT_SERVERS = [name for name in SERVERS if name != "picows-assembled" and name not in FLOORS]
SERVERS.update((s.name, s) for s in ASGI_SERVERS)


def fastws_tree(tree: Path) -> ServerSpec:
    """`fastws-tree`: the fastws server (built-in Echo) from another source tree, e.g.
    `git worktree add /tmp/before HEAD~1`: an A/B of two trees in the same run, alternating
    like any two servers (`python -m bench run --fastws-tree /tmp/before --servers
    fastws,fastws-tree,picows`). `python -P` keeps the current directory (this checkout)
    off sys.path, so PYTHONPATH decides which fastws runs."""
    base = SERVERS["fastws"]

    def command(host: str, port: int, bins: dict[str, Path]) -> list[str]:
        argv = base.command(host, port, bins)
        return ["env", f"PYTHONPATH={tree.resolve()}", argv[0], "-P", *argv[1:]]

    return ServerSpec(
        "fastws-tree",
        f"fastws serve from {tree} (built-in echo, uvloop, one process)",
        command,
        modules=base.modules,
        features=base.features,
        compression_args=base.compression_args,
        workers_args=base.workers_args,
    )


def fastws_asgi_trees(tree: Path) -> list[ServerSpec]:
    """`fastws-asgi-tree`, `fastws-asgi-zc-tree`: the ASGI servers of that name without
    `-tree`, with fastws (and the Starlette app, if the tree has bench/) from another source
    tree, for an A/B of the ASGI mode in one run (`--fastws-tree DIR --servers
    fastws-asgi,fastws-asgi-tree`). `python -P`, PYTHONPATH the tree then this checkout."""
    specs = []
    for name in ("fastws-asgi", "fastws-asgi-zc"):
        base = SERVERS[name]

        def command(
            host: str, port: int, bins: dict[str, Path], base: ServerSpec = base
        ) -> list[str]:
            argv = base.command(host, port, bins)  # env PYTHONPATH=REPO PY -m fastws serve ...
            rest = argv[argv.index(PY) + 1 :]
            return ["env", f"PYTHONPATH={tree.resolve()}:{REPO}", PY, "-P", *rest]

        specs.append(
            ServerSpec(
                f"{name}-tree",
                f"{base.description}, fastws from {tree}",
                command,
                modules=base.modules,
                workers_args=base.workers_args,
            )
        )
    return specs


#: servers that are not fastws and not the physical limit: "the peers" of the ratios
PEER_EXCLUDE = frozenset(
    {"fastws", "fastws-coroutine", "fastws-tree", "raw-tcp", "fastws-asgi", "fastws-asgi-zc"}
    | {"fastws-asgi-raw", "fastws-asgi-tree", "fastws-asgi-zc-tree"}
    | FLOORS
)
