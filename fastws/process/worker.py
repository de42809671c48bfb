"""A worker process: what runs in the child after the master forks.

It creates its own event loop (uvloop by default) only now, after the fork, serves the
inherited listening socket with `fastws.server.Server`, and beats: a loop callback writes the
heartbeat and the counters into the worker's scoreboard slot every `HEARTBEAT` seconds. The
beat comes from the event loop itself, so a loop blocked by the application stops it and the
master notices.

Signals: TERM/INT graceful stop (stop accepting, Close 1001 to every client, wait for the
closing handshakes up to graceful_timeout); QUIT immediate exit. HUP, TTIN and TTOU are the
master's business and are ignored here (a terminal's HUP must not kill workers). The kernel
sends TERM when the master dies (PR_SET_PDEATHSIG), so a worker never outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import logging
import os
import signal
import socket
import ssl as _ssl
import sys
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from ..config import Config, import_object
from ..handler import HandlerError
from ..handler import check as check_handler
from ..protocol.frames import CloseCode
from ..stats import counters
from ..stats.scoreboard import READY, STOPPING, Scoreboard

if TYPE_CHECKING:
    from ..pubsub.ring import Ring
    from ..server.server import Handler

__all__ = ["WORKER_BOOT_ERROR", "WorkerSpec", "run_worker"]

logger = logging.getLogger("fastws.worker")

#: Exit status of a worker that could not start serving (gunicorn uses the same number).
WORKER_BOOT_ERROR = 3
#: Seconds between heartbeats (and counter publications); also bounds how stale /metrics is.
HEARTBEAT = 0.25

_PR_SET_PDEATHSIG = 1
_MASTER_SIGNALS = (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH)


@dataclass
class WorkerSpec:
    """Everything a worker needs, prepared by the master before it forks."""

    handler: Handler
    config: Config
    app: str
    sock: socket.socket
    close_socks: list[socket.socket]
    close_fds: list[int]
    scoreboard: Scoreboard
    slot: int
    listener: int
    master_pid: int
    #: The application's own modules: dropped and imported again in the worker.
    reload_modules: Collection[str] = ()
    #: The host's channels ring (broker local), created by the master before forking.
    ring: Ring | None = None
    #: A TLS context given in Python (`fastws.run(..., ssl=ctx)`): the fork inherits it.
    #: Without one, each worker loads certfile/keyfile itself, so a HUP picks up new files.
    ssl: _ssl.SSLContext | None = None


def run_worker(spec: WorkerSpec) -> NoReturn:
    """The child's whole life; never returns into the master's code."""
    status = 1
    try:
        status = _run(spec)
    except BaseException as exc:  # pragma: no cover - last resort, the reason is logged
        logger.exception("worker %d crashed", os.getpid())
        with contextlib.suppress(Exception):
            spec.scoreboard.fail(spec.slot, f"crashed: {exc!r}")
    finally:
        with contextlib.suppress(Exception):
            spec.scoreboard.beat(spec.slot)
        with contextlib.suppress(Exception):
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
    os._exit(status)


def _run(spec: WorkerSpec) -> int:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    for sig in _MASTER_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.set_wakeup_fd(-1)
    _die_with_parent(spec.master_pid)
    for sock in spec.close_socks:
        sock.close()  # other slots' sockets (reuseport): their workers accept from them
    for fd in spec.close_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    counters.reset()
    spec.scoreboard.set_pid(spec.slot, os.getpid())
    try:
        handler, config = _load(spec)
        from ..server.server import new_event_loop

        loop = new_event_loop(config.loop)
    except Exception as exc:
        reason = str(exc) or type(exc).__name__
        logger.error("worker %d failed to boot: %s", os.getpid(), reason)
        spec.scoreboard.fail(spec.slot, reason)
        return WORKER_BOOT_ERROR
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_serve(spec, handler, config))
    finally:
        loop.close()


def _die_with_parent(master_pid: int) -> None:
    """Have the kernel send SIGTERM when the master dies; if it already has, stop now."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != master_pid:
        os._exit(0)


def _load(spec: WorkerSpec) -> tuple[Handler, Config]:
    """The handler and config, imported afresh from the application's source."""
    if not spec.reload_modules:
        return spec.handler, spec.config
    for name in spec.reload_modules:
        sys.modules.pop(name, None)
    try:
        handler = import_object(spec.app)
    except ImportError as exc:
        raise ImportError(f"cannot import APP {spec.app!r}: {exc}") from None
    except Exception as exc:
        raise ImportError(f"cannot import APP {spec.app!r}: {type(exc).__name__}: {exc}") from None
    try:  # the reloaded code must still be a handler (a table or a Listener object too)
        check_handler(handler)
    except HandlerError as exc:
        raise ImportError(f"APP {spec.app!r} cannot serve: {exc}") from None
    config = spec.config
    for field in ("process_request", "process_response", "select_subprotocol"):
        hook = getattr(config, field)
        if hook is not None and getattr(hook, "__module__", None) in spec.reload_modules:
            path = f"{hook.__module__}:{hook.__qualname__}"
            # The field takes an import path too (Config converts it): imported anew here.
            fresh: dict[str, Any] = {field: path}
            config = dataclasses.replace(config, **fresh)
    return handler, config


async def _serve(spec: WorkerSpec, handler: Handler, config: Config) -> int:
    from ..server.server import Server

    loop = asyncio.get_running_loop()
    board, slot = spec.scoreboard, spec.slot
    stop: asyncio.Future[int] = loop.create_future()

    def on_signal(signum: int) -> None:
        if signum == signal.SIGQUIT:
            board.beat(slot, STOPPING)
            os._exit(0)  # immediate: the kernel closes every connection
        if not stop.done():
            stop.set_result(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        loop.add_signal_handler(sig, on_signal, sig)

    try:
        server = Server(handler, config, sock=spec.sock, ssl=spec.ssl)  # loads the TLS files
        server.scoreboard, server.scoreboard_slot = board, slot
        server.ring = spec.ring
        await server.start()
    except Exception as exc:
        reason = f"cannot serve {spec.sock.getsockname()!r}: {exc}"
        logger.error("worker %d failed to boot: %s", os.getpid(), reason)
        board.fail(slot, reason)
        return WORKER_BOOT_ERROR

    state = READY
    beat_handle: asyncio.TimerHandle | None = None

    def heartbeat() -> None:
        nonlocal beat_handle
        server.sample_gauges()
        board.beat(slot, state)
        beat_handle = loop.call_later(HEARTBEAT, heartbeat)

    heartbeat()
    board.beat(slot, READY)
    logger.info("worker %d serving (slot %d)", os.getpid(), spec.listener)

    received = await stop
    state = STOPPING
    board.beat(slot, STOPPING)
    logger.info(
        "worker %d: %s, closing %d connections",
        os.getpid(),
        signal.Signals(received).name,
        len(server.connections),
    )
    # The closing handshakes get graceful_timeout less a second (for dropping the rest and
    # exiting before the master's kill); wait_for is the backstop should the stop hang.
    budget = max(config.graceful_timeout - 1.0, config.graceful_timeout / 2)
    try:
        await asyncio.wait_for(
            server.shutdown(CloseCode.GOING_AWAY, "server shutting down", budget),
            config.graceful_timeout,
        )
    except TimeoutError:
        logger.warning(
            "worker %d: graceful_timeout reached, dropping %d connections",
            os.getpid(),
            server.abort(),
        )
        await asyncio.sleep(0)
    if beat_handle is not None:
        beat_handle.cancel()
    board.beat(slot, STOPPING)
    return 0
