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
import ctypes
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# `tests` has no __init__.py, so pytest only puts tests/ on sys.path: make `tests.wire` and
# `tests.apps` importable whatever the working directory.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
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


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (bind to port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


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


_LIBC = ctypes.CDLL(None) if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: have the kernel SIGKILL the server if pytest itself dies (PR_SET_PDEATHSIG)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _process_tree(root: int) -> list[int]:
    """`root` and its descendants, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces/parentheses, split after it.
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def _vm_rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class ServerProcess:
    """A running server process started by the fixtures."""

    def __init__(self, app: str, options: dict[str, Any], log_dir: Path) -> None:
        self.app = app
        if not os.environ.get(SERVER_CMD_ENV) and "FASTWS_WORKERS" not in os.environ:
            # One worker (under the master) unless a test asks for more: every connection of
            # a test then meets the same worker, as the server tests assume (e.g. a probe
            # that must keep being served while an attack runs on the same process).
            options = {"workers": 1, **options}
        # host="127.0.0.2" listens there instead (another "host" of a multi-host test).
        self.host = str(options.pop("host", "127.0.0.1"))
        self.options = dict(options)
        self.port = free_port(self.host)
        self.cmd = [
            *server_command(),
            "serve",
            app,
            "--host",
            self.host,
            "--port",
            str(self.port),
            *option_args(options),
        ]
        self.stderr_path = log_dir / f"server-{self.port}.stderr"
        self.stdout_path = log_dir / f"server-{self.port}.stdout"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])]
        )
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
        with open(self.stderr_path, "wb") as err, open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen(
                self.cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                cwd=REPO_ROOT,
                start_new_session=True,  # own process group: workers die with it
                preexec_fn=_die_with_parent,
            )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    # -- introspection ----------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/"

    def url_for(self, path: str) -> str:
        return f"ws://{self.host}:{self.port}{path}"

    def stderr(self) -> str:
        """Everything the server wrote to stderr so far (its logs)."""
        return self.stderr_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 5.0) -> str:
        """Poll stderr until it contains `text`; return the whole log."""
        deadline = time.monotonic() + timeout
        while True:
            logs = self.stderr()
            if text in logs:
                return logs
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged within {timeout} s; stderr:\n{logs}")
            time.sleep(0.02)

    def pids(self) -> list[int]:
        return _process_tree(self.pid)

    def rss_bytes(self) -> int:
        """Resident memory of the server and all its child processes."""
        return sum(_vm_rss_bytes(pid) for pid in self.pids())

    def is_running(self) -> bool:
        return self.proc.poll() is None

    def __repr__(self) -> str:
        return f"<ServerProcess pid={self.pid} {shlex.join(self.cmd)}>"

    # -- lifetime ---------------------------------------------------------------------------

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode} before listening:\n"
                    f"$ {shlex.join(self.cmd)}\n{self.stderr()}{self.stdout()}"
                )
            # A pre-fork master listens before its workers serve: ready means that a request
            # gets an answer (any bytes, or the connection closed), not just a TCP accept.
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5) as probe:
                    probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: ready\r\n\r\n")
                    probe.recv(1)
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"server not accepting connections after {STARTUP_TIMEOUT} s:\n"
                    f"$ {shlex.join(self.cmd)}\n{self.stderr()}{self.stdout()}"
                )
            time.sleep(0.02)

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def stop(self, grace: float = STOP_GRACE) -> int:
        """SIGTERM, wait up to `grace` s, then SIGKILL the process group. Idempotent."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait()
        # Whatever the leader left behind in its group (worker processes) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        return self.proc.returncode


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
