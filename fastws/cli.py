"""The ``fastws`` command: ``fastws serve [APP] [options]``, also ``python -m fastws``.

The flags come from :class:`fastws.config.Config`, so this module only knows
about APP, logging, and turning mistakes into one-line errors with exit status 2
(the usual status for a bad command line) instead of tracebacks.
"""

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from typing import Any, NoReturn

from fastws import logs
from fastws.config import Config, ConfigError, import_object
from fastws.handler import HandlerError
from fastws.handler import check as check_handler

__all__ = ["DEFAULT_APP", "LOG_FORMAT", "CLIError", "build", "main", "make_parser"]

DEFAULT_APP = "fastws.apps.echo:Echo"
LOG_FORMAT = logs.LOG_FORMAT


class CLIError(Exception):
    """A mistake on the command line that deserves one line, not a traceback."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: the usage of ``serve`` fills a screen."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _version() -> str:
    try:
        return metadata.version("fastws")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"


def make_parser() -> argparse.ArgumentParser:
    """Build the argument parser; ``serve`` gets one flag per Config field."""
    parser = _Parser(prog="fastws", description="fastws: a high-performance WebSocket server.")
    parser.add_argument("--version", action="version", version=f"fastws {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve = commands.add_parser(
        "serve",
        help="run a WebSocket server",
        description="Serve APP, an async handler called with each WebSocket connection.",
        allow_abbrev=False,  # a prefix that works today would break when a knob is added
    )
    serve.add_argument(
        "app",
        nargs="?",
        default=DEFAULT_APP,
        metavar="APP",
        help="the handler as module:attribute, importable from the current directory"
        f" (default: {DEFAULT_APP}, which echoes every message back)",
    )
    Config.add_arguments(serve)
    from fastws import status

    status.add_arguments(
        commands.add_parser(
            "status",
            help="show a running server's workers and counters",
            description=status.__doc__,
            allow_abbrev=False,
        )
    )
    return parser


def _load_app(path: str) -> Callable[..., Any]:
    try:
        handler = import_object(path)
    except ImportError as exc:
        raise CLIError(f"cannot import APP {path!r}: {exc}") from None
    if not callable(handler) and not isinstance(handler, Mapping):  # a {path: handler} table
        raise CLIError(f"APP {path!r} is not callable (it is of type {type(handler).__name__})")
    try:
        check_handler(handler)
    except HandlerError as exc:  # it would fail every connection with 1011: say so now
        raise CLIError(f"APP {path!r} cannot serve: {exc}") from None
    return handler


def build(argv: Sequence[str] | None = None) -> tuple[Callable[..., Any], Config]:
    """Parse ``argv`` and return the handler and Config that ``main`` would run.

    Argparse mistakes raise SystemExit (after printing); bad settings raise
    :exc:`ConfigError` and an APP that can't be imported raises :exc:`CLIError`.
    """
    _, handler, config = _build(argv)
    return handler, config


def _build(argv: Sequence[str] | None) -> tuple[str, Callable[..., Any], Config]:
    parser = make_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # argparse would blame "fastws", whose --help doesn't list the flags
        _Parser(prog=f"fastws {args.command}").error(f"unrecognized arguments: {' '.join(extra)}")
    # Like python -m and uvicorn: `fastws serve myapp:handler` finds ./myapp.py.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    config = Config.load(args)
    config.ssl_context()  # missing or unreadable TLS files: one line here, not in each worker
    return args.app, _load_app(args.app), config


#: The handler the CLI installs (calling main() again replaces it): see fastws.logs.
_Handler = logs.StderrHandler


def _configure_logging(level: str, config_file: str | None = None, fmt: str = "text") -> None:
    logs.configure(level, config_file, fmt)


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return the exit status."""
    # Warnings while loading the configuration (unknown FASTWS_* variables) are
    # shown whatever --log-level says: they are about the configuration itself.
    _configure_logging("warning")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["status"]:
        from fastws import status

        return status.main(argv[1:])
    loaded_before = set(sys.modules)
    try:
        app, handler, config = _build(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except ConfigError as exc:
        print(f"fastws serve: error: {exc}", file=sys.stderr)
        return 2
    except CLIError as exc:
        print(f"fastws: {exc}", file=sys.stderr)
        return 2
    try:
        _configure_logging(config.log_level, config.log_config, config.log_format)
    except ValueError as exc:
        print(
            f"fastws serve: error: log_config (--log-config / FASTWS_LOG_CONFIG): {exc}",
            file=sys.stderr,
        )
        return 2

    from fastws.asgi.lifespan import LifespanFailed
    from fastws.launch import launch  # one place decides: this process alone or a master

    try:
        return launch(handler, config, app=app, loaded=set(sys.modules) - loaded_before)
    except OSError as exc:  # this process alone cannot listen (address in use, permission...)
        print(f"fastws serve: error: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except LifespanFailed as exc:  # the ASGI application's startup failed (--workers 0)
        print(f"fastws serve: error: {exc}", file=sys.stderr)
        return 3
