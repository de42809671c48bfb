"""The listening sockets, created by the master before it forks any worker.

Because the master owns them, a worker that dies or is reloaded never takes the listening queue
with it: its replacement inherits the same socket. Two ways to share a TCP port:

- ``shared``: one socket; every worker accepts from it and the kernel wakes whichever is waiting.
- ``reuseport``: one ``SO_REUSEPORT`` socket per worker slot, all bound to the same address;
  the kernel hashes each new connection to one socket (so to one worker slot). A slot's next
  worker (after a crash or a reload) inherits that slot's socket and its queue.

``--uds PATH`` and ``--fd N`` always give one shared socket.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
from collections.abc import Iterator

from ..config import Config

__all__ = ["Listeners", "describe"]

logger = logging.getLogger("fastws.arbiter")


def describe(sock: socket.socket, tls: bool = False) -> str:
    """`ws://host:port` (`wss://` with TLS) or `unix:PATH`, for log lines."""
    address = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{address}"
    host, port = address[0], address[1]
    scheme = "wss" if tls else "ws"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


class Listeners:
    """The sockets of a server: one shared socket, or one per worker slot (reuseport).

    Errors are OSErrors whose message names the option at fault (`--host`, `--fd`) or the
    address that cannot be listened on.
    """

    def __init__(self, config: Config, tls: bool = False) -> None:
        self.config = config
        self.tls = tls
        self.reuseport = (
            config.socket_mode == "reuseport" and config.uds is None and config.fd is None
        )
        self._socks: list[socket.socket] = []
        self._uds_path: str | None = None

    def open(self, slots: int) -> None:
        """Create the socket(s); raises OSError (with the address in the message) on failure."""
        config = self.config
        if config.fd is not None:
            try:
                sock = socket.socket(fileno=config.fd)
            except OSError as exc:
                reason = exc.strerror or str(exc)
                raise OSError(exc.errno, f"--fd {config.fd}: {reason}") from None
            if sock.type != socket.SOCK_STREAM:
                raise OSError(errno.EINVAL, f"--fd {config.fd} is not a stream socket")
            try:
                sock.listen(config.backlog)  # harmless if it listens already; required if not
            except OSError as exc:
                raise OSError(exc.errno, f"--fd {config.fd}: {exc.strerror}") from None
            self._socks = [sock]
        elif config.uds is not None:
            self._socks = [self._bind_unix(config.uds)]
        elif self.reuseport:
            # SO_REUSEPORT lets any process of this user bind the same port and take a share
            # of its connections: a second server started by mistake would split the traffic
            # silently. A probe bound without it fails if anybody listens there already, and
            # while it stays bound (not listening) no such server can start either.
            with self._probe():
                self._socks = [self._bind_tcp(reuseport=True)]
                self.ensure(slots)
        else:
            self._socks = [self._bind_tcp(reuseport=False)]
        for sock in self._socks:
            sock.setblocking(False)

    @property
    def address(self) -> str:
        return describe(self._socks[0], self.tls)

    @property
    def port(self) -> int | None:
        if self._socks[0].family == socket.AF_UNIX:
            return None
        return int(self._socks[0].getsockname()[1])

    def for_slot(self, index: int) -> socket.socket:
        """The socket the worker of slot `index` accepts from."""
        return self._socks[index] if self.reuseport else self._socks[0]

    def others(self, index: int) -> list[socket.socket]:
        """The sockets a worker of slot `index` does not use (it closes its copies)."""
        if not self.reuseport:
            return []
        return [sock for i, sock in enumerate(self._socks) if i != index]

    def ensure(self, slots: int) -> None:
        """reuseport: have a socket for slots 0..slots-1 (TTIN adds one)."""
        while self.reuseport and len(self._socks) < slots:
            sock = self._bind_tcp(reuseport=True, port=self.port)
            sock.setblocking(False)
            self._socks.append(sock)

    def shrink(self, slots: int) -> None:
        """reuseport: close the sockets of slots >= `slots` (TTOU), so the kernel stops
        routing new connections to a slot nobody will serve. Connections still queued on a
        closed socket are reset by the kernel."""
        while self.reuseport and len(self._socks) > max(slots, 1):
            self._socks.pop().close()

    def close(self) -> None:
        for sock in self._socks:
            sock.close()
        self._socks = []
        if self._uds_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._uds_path)
            self._uds_path = None

    @contextlib.contextmanager
    def _probe(self) -> Iterator[None]:
        """Fail with EADDRINUSE if a socket listens on the address (reuseport or not)."""
        if self.config.port == 0:  # the kernel picks a port nobody uses
            yield
            return
        probe = self._bind_tcp(reuseport=False, listen=False)
        try:
            yield
        finally:
            probe.close()

    def _bind_tcp(
        self, reuseport: bool, port: int | None = None, listen: bool = True
    ) -> socket.socket:
        config = self.config
        host = config.host
        try:
            infos = socket.getaddrinfo(
                host,
                config.port if port is None else port,
                type=socket.SOCK_STREAM,
                flags=socket.AI_PASSIVE,
            )
        except socket.gaierror as exc:  # not an address, and no name that resolves
            raise OSError(errno.EINVAL, f"--host {host}: {exc.strerror}") from None
        family, _, proto, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuseport:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                where = f"{host}:{config.port if port is None else port}"
                raise OSError(exc.errno, f"cannot listen on {where}: {exc.strerror}") from None
            if listen:
                sock.listen(config.backlog)
        except BaseException:
            sock.close()
            raise
        return sock

    def _bind_unix(self, path: str) -> socket.socket:
        # A socket file left by a previous run that nobody listens on any more is replaced;
        # one somebody still listens on is not (that would steal a running server's address).
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.stat(path).st_mode):
                probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    probe.connect(path)
                except OSError:
                    os.unlink(path)
                else:
                    raise OSError(errno.EADDRINUSE, f"cannot listen on {path}: already in use")
                finally:
                    probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                sock.bind(path)
            except OSError as exc:
                raise OSError(exc.errno, f"cannot listen on {path}: {exc.strerror}") from None
            sock.listen(self.config.backlog)
        except BaseException:
            sock.close()
            raise
        self._uds_path = path
        return sock
