"""fastws.launch: the one place that decides between this process alone and a master with
workers, for `fastws.run()` as for `fastws serve` (tests/test_cli.py covers the CLI side).

The two sides are replaced by recorders here; tests/server/test_tls.py and tests/process run
`fastws.run(..., workers=2)` and `fastws serve` for real.
"""

from __future__ import annotations

import ssl
from typing import Any

import pytest

import fastws
from fastws import launch
from fastws.config import Config
from fastws.process import arbiter
from fastws.server import server


async def handler(ws: Any) -> None:
    pass


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Record what would run instead of serving: ("single", config) or ("master", args)."""
    seen: list[tuple[str, Any]] = []

    def run_single(handler: Any, config: Config, *, ssl: Any = None, sock: Any = None) -> None:
        seen.append(("single", (handler, config, ssl)))
        assert sock is not None and sock.getsockname()[1] > 0  # listening, made by launch

    def run_master(*args: Any, **kwargs: Any) -> int:
        seen.append(("master", (args, kwargs)))
        return 0

    monkeypatch.setattr(server, "run_single", run_single)
    monkeypatch.setattr("fastws.server.run_single", run_single)
    monkeypatch.setattr(arbiter, "run", run_master)
    for name in ("FASTWS_WORKERS", "FASTWS_PORT", "FASTWS_CERTFILE", "FASTWS_KEYFILE"):
        monkeypatch.delenv(name, raising=False)
    return seen


def test_workers_0_serves_in_this_process(calls: list[tuple[str, Any]]) -> None:
    """fastws.run(handler, workers=0) runs the server here, with the options it was given."""
    fastws.run(handler, workers=0, port=0)
    [(kind, (got, config, context))] = calls
    assert (kind, got, config.port, context) == ("single", handler, 0, None)


def test_workers_n_runs_the_master_with_the_handler_named(calls: list[tuple[str, Any]]) -> None:
    """Any other count starts the master, which names the handler module:qualname (the
    workers of a HUP reload import it by that name) and gets no modules to re-import."""
    fastws.run(handler, workers=2, port=0)
    [(kind, (args, kwargs))] = calls
    app, got, config, modules = args
    assert kind == "master"
    assert (app, got, config.workers, list(modules), kwargs) == (
        f"{__name__}:handler",
        handler,
        2,
        [],
        {"ssl": None},
    )


def test_a_master_that_fails_exits_with_its_status(monkeypatch: pytest.MonkeyPatch) -> None:
    """fastws.run() raises SystemExit with the master's non-zero exit status (3: no worker
    could boot) rather than returning as if it had served."""
    monkeypatch.setattr(arbiter, "run", lambda *args, **kwargs: 3)
    with pytest.raises(SystemExit) as info:
        fastws.run(handler, workers=1, port=0)
    assert info.value.code == 3


def test_ssl_and_certfile_together_are_refused_before_anything_runs(
    calls: list[tuple[str, Any]],
) -> None:
    """Both an SSLContext and certfile/keyfile: which one would serve is ambiguous."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for workers in (0, 2):
        config = Config(workers=workers, certfile="cert.pem", keyfile="key.pem")
        with pytest.raises(ValueError, match="either ssl= or certfile"):
            launch.launch(handler, config, ssl=context)
    assert calls == []


def test_options_and_a_config_together_are_refused(calls: list[tuple[str, Any]]) -> None:
    with pytest.raises(TypeError):
        fastws.run(handler, Config(), port=0)
    assert calls == []
