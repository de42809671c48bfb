"""Where a server runs: in this process alone, or under a master with worker processes.

The one place that decides, for both `fastws.run()` and `fastws serve`: `config.workers` 0
serves in this process (`fastws.server.run_single`), any other count starts the pre-fork
master (`fastws.process.arbiter`), which forks that many workers. Gunicorn keeps its master
even for one worker, and so does fastws: supervision, HUP reload and /metrics work the same
way whatever the count. Each side is imported only when it is used.
"""

from __future__ import annotations

import ssl as _ssl
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from .config import Config
from .handler import check as check_handler

if TYPE_CHECKING:
    from .server.server import Handler

__all__ = ["launch", "run"]


def launch(
    handler: Handler,
    config: Config,
    *,
    app: str | None = None,
    loaded: Collection[str] = (),
    ssl: _ssl.SSLContext | None = None,
) -> int:
    """Serve `handler` until told to stop; return the exit status (0: stopped normally).

    `app` names the handler as module:attribute (workers re-import it on a HUP reload) and
    `loaded` lists the modules that importing it brought in (the ones a reload imports
    again). A handler that cannot serve raises HandlerError (a TypeError) before anything
    starts. In this process alone, failing to listen raises OSError; a master logs it and
    returns 1.
    """
    check_handler(handler)  # a handler that cannot work fails here, not on every connection
    if ssl is not None and config.certfile is not None:
        raise ValueError("pass either ssl= or certfile/keyfile, not both")
    tls = ssl is not None or config.certfile is not None
    if not config.workers:
        from .process.sockets import Listeners
        from .server import run_single

        # The socket made as the master makes it: --uds and --fd work, a busy port fails.
        listeners = Listeners(config, tls=tls)
        listeners.open(1)
        try:
            run_single(handler, config, ssl=ssl, sock=listeners.for_slot(0))
        finally:
            listeners.close()
        return 0
    from .process import arbiter

    if ssl is None:
        config.ssl_context()  # unreadable TLS files: ConfigError here, not in every worker
    if app is None:
        app = f"{getattr(handler, '__module__', '?')}:{getattr(handler, '__qualname__', '?')}"
    return arbiter.run(app, handler, config, arbiter.application_modules(loaded), ssl=ssl)


def run(
    handler: Handler,
    config: Config | None = None,
    *,
    ssl: _ssl.SSLContext | None = None,
    **options: Any,
) -> None:
    """Serve until SIGINT or SIGTERM, then stop gracefully (Close 1001 to every client).

    Like the command line, `run` reads `FASTWS_*` environment variables for the options not
    given here, and `workers` means what `--workers` means: N worker processes under a master
    (forked: they inherit `handler` and `ssl` as they are), 0 this process alone. A master
    that cannot start its workers raises SystemExit with its exit status.
    """
    if config is None:
        config = Config.load(**options)
    elif options:
        raise TypeError("pass either a Config or options, not both")
    if config.log_config is not None or config.log_format != "text":
        from . import logs  # asked for in Python as on the command line: applied the same way

        logs.configure(config.log_level, config.log_config, config.log_format)
    status = launch(handler, config, ssl=ssl)
    if status:
        raise SystemExit(status)
