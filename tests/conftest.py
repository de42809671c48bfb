"""Shared fixtures: real fastws server processes on real sockets.

Fixture API
-----------
``start_server(app="fastws.apps.echo:echo", **options) -> ServerProcess`` (function scope)
    Starts ``python -m fastws serve APP --host 127.0.0.1 --port P --opt value ...`` on a free
    port and waits until the port accepts connections. Options are fastws Config field names:
    ``max_message_size=1024`` becomes ``--max-message-size 1024``; ``True`` becomes a bare flag,
    ``False``/``None`` are left out, lists/tuples are joined with commas
    (``subprotocols=["chat", "superchat"]`` -> ``--subprotocols chat,superchat``).
    Every server started is stopped when the test ends (SIGTERM, 5 s grace, then SIGKILL of its
    whole process group), also when the test fails; its stderr is attached to the report.
``start_module_server(...)``: the same factory, module scope (servers live for the module).
``echo_server``: a module-scoped default echo server.

Servers get ``--workers 1`` (a master with one worker) unless the test passes ``workers=`` or
``FASTWS_WORKERS`` is set (``FASTWS_WORKERS=2 pytest tests/server`` runs the suite multi-worker).

``ServerProcess`` has ``.port``, ``.host``, ``.url`` (``ws://127.0.0.1:P/``), ``.url_for(path)``,
``.proc`` (the Popen), ``.pid``, ``.stderr()`` (everything logged so far), ``.wait_for_log(text)``,
``.rss_bytes()`` (VmRSS summed over the server's process tree, from /proc) and ``.stop()``.
``host=`` (e.g. ``"127.0.0.2"``) makes it listen on another loopback address (tests that
need several "hosts").

The server under test
---------------------
By default the command is ``sys.executable -m fastws``. Set ``FASTWS_TEST_SERVER_CMD`` to another
command prefix (split like a shell would) to run the same suite against a stand-in, e.g. a
known-good server built on the ``websockets`` library that accepts the same CLI::

    FASTWS_TEST_SERVER_CMD="python /tmp/standin.py" pytest tests/server

The fixture appends ``serve APP --host 127.0.0.1 --port P ...`` to that prefix. The repository
root is put first on PYTHONPATH so that ``tests.apps:NAME`` is importable by the server.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# `tests` has no __init__.py, so pytest only puts tests/ on sys.path: make `tests.wire` and
# `tests.apps` importable whatever the working directory.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
from bench import procs  # noqa: E402 - the process harness, from the repository root
from bench.procs import free_port  # noqa: E402

DEFAULT_APP = "fastws.apps.echo:echo"
STARTUP_TIMEOUT = 10.0
STOP_GRACE = 5.0
SERVER_CMD_ENV = "FASTWS_TEST_SERVER_CMD"


def server_command() -> list[str]:
    """The command prefix that runs the server under test (see module docstring)."""
    override = os.environ.get(SERVER_CMD_ENV)
    if override:
        return shlex.split(override)
    return [sys.executable, "-m", "fastws"]


def option_args(options: dict[str, Any]) -> list[str]:
    """Config field names to CLI flags: max_message_size=1024 -> --max-message-size 1024."""
    args: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            args.append(flag)
        elif isinstance(value, list | tuple):
            args += [flag, ",".join(str(v) for v in value)]
        else:
            args += [flag, str(value)]
    return args


class ServerProcess(procs.ServerProcess):
    """`fastws serve APP --host H --port P OPTIONS...` started by the fixtures, serving."""

    def __init__(self, app: str, options: dict[str, Any], log_dir: Path) -> None:
        self.app = app
        if not os.environ.get(SERVER_CMD_ENV) and "FASTWS_WORKERS" not in os.environ:
            # One worker (under the master) unless a test asks for more: every connection of
            # a test then meets the same worker, as the server tests assume (e.g. a probe
            # that must keep being served while an attack runs on the same process).
            options = {"workers": 1, **options}
        # host="127.0.0.2" listens there instead (another "host" of a multi-host test).
        host = str(options.pop("host", "127.0.0.1"))
        self.options = dict(options)
        port = free_port(host)
        cmd = [*server_command(), "serve", app, "--host", host, "--port", str(port)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])]
        )
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
        super().__init__(
            [*cmd, *option_args(options)],
            host,
            port,
            log_path=log_dir / f"server-{port}.stdout",
            stderr_path=log_dir / f"server-{port}.stderr",
            cwd=REPO_ROOT,
            env=env,
            die_with_parent=True,
        )
        self.stdout_path = log_dir / f"server-{port}.stdout"
        try:
            # Ready means that a request gets an answer, not just a TCP accept.
            self.wait_listening(
                STARTUP_TIMEOUT, probe=b"GET /healthz HTTP/1.1\r\nHost: ready\r\n\r\n"
            )
        except BaseException:
            self.stop()
            raise

    def stop(self, grace: float = STOP_GRACE, *, group_term: bool = False) -> int:
        """SIGTERM, wait up to `grace` s, then SIGKILL the process group. Idempotent."""
        return super().stop(grace, group_term=group_term)


ServerFactory = Callable[..., ServerProcess]


@contextlib.contextmanager
def _server_factory(
    log_dir: Path, report: Callable[[str, str], None] | None = None
) -> Iterator[ServerFactory]:
    started: list[ServerProcess] = []

    def start(app: str = DEFAULT_APP, **options: Any) -> ServerProcess:
        server = ServerProcess(app, options, log_dir)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
            if report is not None:
                report(f"server :{server.port} stderr ({shlex.join(server.cmd)})", server.stderr())


@pytest.fixture(scope="session")
def _server_log_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fastws-tests-") as path:
        yield Path(path)


@pytest.fixture
def start_server(request: pytest.FixtureRequest, _server_log_dir: Path) -> Iterator[ServerFactory]:
    """Factory: start_server(app=DEFAULT_APP, **options) -> ServerProcess, stopped after the test."""

    def report(title: str, text: str) -> None:
        request.node.add_report_section("teardown", title, text)

    with _server_factory(_server_log_dir, report) as start:
        yield start


@pytest.fixture(scope="module")
def start_module_server(_server_log_dir: Path) -> Iterator[ServerFactory]:
    """Like start_server, but the servers live until the end of the test module."""
    with _server_factory(_server_log_dir) as start:
        yield start


@pytest.fixture(scope="module")
def echo_server(start_module_server: ServerFactory) -> ServerProcess:
    """The built-in echo app with default options, shared by a test module."""
    return start_module_server()
