"""N processes, each its own server on its own SO_REUSEPORT socket: how the single-process
peers (picows, aiohttp) are run on several cores.

The sockets are all bound and listening before the first fork (as fastws' master does with
--socket-mode reuseport), so no connection can reach a port that only some of the processes
serve yet, and the kernel spreads connections over the N sockets from the start. Each child
keeps its own socket, closes the others and creates its event loop after the fork. The
parent prints "listening", forwards TERM/INT to the children and exits when they have.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def reuseport_sockets(host: str, port: int, n: int, backlog: int = 2048) -> list[socket.socket]:
    """n listening TCP sockets on the same address, SO_REUSEPORT on each."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks = []
    for _ in range(n):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
        socks.append(sock)
    return socks


def serve(host: str, port: int, n: int, run: Callable[[socket.socket], None]) -> None:
    """Fork n children, child i running `run(socket i)` until it returns; wait for them."""
    socks = reuseport_sockets(host, port, n)
    pids = []
    for i in range(n):
        pid = os.fork()
        if pid == 0:  # the child: its socket only, gone with the parent
            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            for j, sock in enumerate(socks):
                if j != i:
                    sock.close()
            code = 0
            try:
                run(socks[i])
            except KeyboardInterrupt:
                pass
            except BaseException:  # reported, then the child exits
                import traceback

                traceback.print_exc()
                code = 1
            os._exit(code)
        pids.append(pid)
    for sock in socks:
        sock.close()

    def forward(signum: int, _frame: object) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    print("listening", flush=True)
    status = 0
    for pid in pids:
        while True:
            try:
                _, st = os.waitpid(pid, 0)
                break
            except ChildProcessError:
                st = 0
                break
            except InterruptedError:
                continue
        status = status or (os.waitstatus_to_exitcode(st) != 0)
    sys.exit(status)
