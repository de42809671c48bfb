"""The fastws command line: flags from Config, APP import, one-line errors, exit status 2."""

import asyncio
import importlib
import logging
import os
import subprocess
import sys
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fastws import cli
from fastws.apps.echo import Echo, echo
from fastws.config import Config
from fastws.process import arbiter, sockets

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m fastws`` as a user would, in a clean FASTWS_* environment."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FASTWS_")}
    environ["PYTHONPATH"] = str(ROOT)
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "fastws", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=environ,
        timeout=60,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], expected_start: str) -> str:
    """Exit status 2, nothing on stdout, exactly one line on stderr and no traceback."""
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(expected_start), lines[0]
    return lines[0]


@pytest.fixture(autouse=True)
def restore_logging_and_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """main() configures the "fastws" logger and build() extends sys.path; undo both."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in list(os.environ):
        if name.startswith("FASTWS_"):
            monkeypatch.delenv(name)
    logger = logging.getLogger("fastws")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


class NoListeners:
    """Stands in for the listening socket of --workers 0 (the tests here listen nowhere)."""

    def __init__(self, config: Config, tls: bool = False) -> None:
        pass

    def open(self, slots: int) -> None:
        pass

    def for_slot(self, index: int) -> None:
        return None

    def close(self) -> None:
        pass


@pytest.fixture
def fake_run(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Config]]:
    """Stand in for fastws.server.run_single and the master (fastws.process.arbiter.run), so
    main() returns instead of serving forever."""
    calls: list[tuple[Any, Config]] = []
    server = types.ModuleType("fastws.server")
    server.run_single = lambda handler, config, **kw: calls.append((handler, config))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fastws.server", server)
    monkeypatch.setattr(sockets, "Listeners", NoListeners)

    def run_master(
        app: str, handler: Any, config: Config, app_modules: Any = (), ssl: Any = None
    ) -> int:
        calls.append((handler, config))
        return 0

    monkeypatch.setattr(arbiter, "run", run_master)
    return calls


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """A fresh working directory with a uniquely named, importable-by-cwd module in it."""
    name = f"fastws_test_app_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(
        "async def handler(ws):\n"
        "    pass\n"
        "\n"
        "class Handlers:\n"
        "    @staticmethod\n"
        "    async def nested(ws):\n"
        "        pass\n"
        "\n"
        "def check(request):\n"
        "    return None\n"
        "\n"
        "not_callable = 42\n"
    )
    monkeypatch.chdir(tmp_path)
    importlib.invalidate_caches()
    yield tmp_path, name
    sys.modules.pop(name, None)


# --- in-process: what main() hands to the server -------------------------------------------


def test_main_runs_the_echo_app_with_the_parsed_config(
    fake_run: list[tuple[Any, Config]],
) -> None:
    """`fastws serve` with no APP serves the built-in echo: the Echo listener (the
    callback path, the fastest)."""
    assert cli.main(["serve", "--port", "0", "--max-message-size", "1MiB"]) == 0
    [(handler, config)] = fake_run
    assert handler is Echo
    assert config == Config(port=0, max_message_size=1024**2)


def test_workers_0_serves_in_this_process_and_1_keeps_the_master(
    fake_run: list[tuple[Any, Config]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--workers 0 runs fastws.server.run_single here; any other count goes through the
    master."""
    masters: list[int] = []
    monkeypatch.setattr(
        arbiter,
        "run",
        lambda app, handler, config, modules=(), ssl=None: masters.append(config.workers),
    )
    assert cli.main(["serve", "--workers", "0"]) == 0
    assert [config.workers for _, config in fake_run] == [0]
    cli.main(["serve", "--workers", "1"])
    assert masters == [1]


def test_main_flag_beats_env_and_env_beats_default(
    fake_run: list[tuple[Any, Config]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FASTWS_PORT", "9000")
    monkeypatch.setenv("FASTWS_MAX_QUEUE", "4")
    assert cli.main(["serve", "--port", "9001"]) == 0
    [(_, config)] = fake_run
    assert (config.port, config.max_queue) == (9001, 4)


def test_main_sets_up_the_fastws_logger(fake_run: list[tuple[Any, Config]]) -> None:
    """The server logs "listening on ..." through the "fastws" logger at --log-level."""
    assert cli.main(["serve", "--log-level", "debug"]) == 0
    logger = logging.getLogger("fastws")
    assert logger.level == logging.DEBUG
    [handler] = [h for h in logger.handlers if isinstance(h, cli._Handler)]
    assert handler.formatter is not None
    assert handler.formatter._fmt == "%(asctime)s %(levelname)s %(name)s: %(message)s"


def test_main_twice_does_not_duplicate_log_lines(fake_run: list[tuple[Any, Config]]) -> None:
    assert cli.main(["serve"]) == 0
    assert cli.main(["serve", "--log-level", "error"]) == 0
    logger = logging.getLogger("fastws")
    assert len([h for h in logger.handlers if isinstance(h, cli._Handler)]) == 1
    assert logger.level == logging.ERROR


def test_main_reports_usage_errors_as_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    """main() returns a status rather than raising, so the console script can sys.exit() it."""
    assert cli.main(["serve", "--port", "notanumber"]) == 2
    assert cli.main(["serve", "--no-such-flag"]) == 2
    assert cli.main([]) == 2
    assert cli.main(["serve", "--help"]) == 0
    capsys.readouterr()


def test_app_is_imported_from_the_current_directory(app_dir: tuple[Path, str]) -> None:
    """`fastws serve myapp:handler` finds ./myapp.py even when started as a console script."""
    path, name = app_dir
    assert str(path) not in sys.path
    handler, _ = cli.build(["serve", f"{name}:handler"])
    assert handler is sys.modules[name].handler


def test_app_attribute_may_be_dotted(app_dir: tuple[Path, str]) -> None:
    _, name = app_dir
    handler, _ = cli.build(["serve", f"{name}:Handlers.nested"])
    assert handler is sys.modules[name].Handlers.nested


def test_process_request_flag_resolves_an_import_path(app_dir: tuple[Path, str]) -> None:
    """--process-request takes module:callable and the server gets the callable itself."""
    _, name = app_dir
    _, config = cli.build(["serve", "--process-request", f"{name}:check"])
    assert config.process_request is sys.modules[name].check


def test_process_request_env_var_resolves_an_import_path(
    app_dir: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, name = app_dir
    monkeypatch.setenv("FASTWS_PROCESS_REQUEST", f"{name}:check")
    _, config = cli.build(["serve"])
    assert config.process_request is sys.modules[name].check


@pytest.mark.parametrize(
    ("attribute", "message"),
    [
        ("missing", "cannot import APP '{name}:missing': '{name}' has no attribute 'missing'"),
        ("not_callable", "APP '{name}:not_callable' is not callable (it is of type int)"),
    ],
)
def test_bad_app_attribute_is_a_cli_error(
    app_dir: tuple[Path, str], attribute: str, message: str
) -> None:
    _, name = app_dir
    with pytest.raises(cli.CLIError) as info:
        cli.build(["serve", f"{name}:{attribute}"])
    assert str(info.value) == message.format(name=name)


def test_echo_sends_every_message_back_unchanged() -> None:
    """The default app: text stays text, binary stays binary, order is kept."""

    class FakeSocket:
        def __init__(self, incoming: list[str | bytes]) -> None:
            self.incoming = incoming
            self.sent: list[str | bytes] = []

        async def __aiter__(self) -> Any:
            for message in self.incoming:
                yield message

        def messages(self) -> Any:  # the zero-copy iteration the echo app uses
            return self.__aiter__()

        async def send(self, message: str | bytes, *, release: bool = False) -> None:
            self.sent.append(message)

    ws = FakeSocket(["hello", b"\x00\xff", "", b""])
    asyncio.run(echo(ws))
    assert ws.sent == ["hello", b"\x00\xff", "", b""]
    assert [type(m) for m in ws.sent] == [str, bytes, str, bytes]


# --- subprocess: what a user sees ---------------------------------------------------------


def test_bad_port_exits_2_with_one_line() -> None:
    result = run_cli("serve", "--port", "notanumber")
    line = assert_one_line_error(result, "fastws serve: error: ")
    assert line == (
        "fastws serve: error: invalid value for port (--port / FASTWS_PORT): "
        "'notanumber' is not an integer"
    )


def test_out_of_range_port_exits_2() -> None:
    line = assert_one_line_error(run_cli("serve", "--port=70000"), "fastws serve: error: ")
    assert "70000 is above the maximum of 65535" in line.replace("'", "")


def test_bad_env_value_exits_2_naming_the_variable() -> None:
    result = run_cli("serve", FASTWS_MAX_MESSAGE_SIZE="12XB")
    line = assert_one_line_error(result, "fastws serve: error: ")
    assert "FASTWS_MAX_MESSAGE_SIZE" in line and "'12XB' is not a size" in line


def test_unknown_flag_exits_2_pointing_at_serve_help() -> None:
    result = run_cli("serve", "--max-mesage-size", "1MiB")
    line = assert_one_line_error(result, "fastws serve: error: unrecognized arguments")
    assert "fastws serve --help" in line


def test_flag_prefixes_are_not_accepted() -> None:
    """--max-m would stop working (ambiguous) as soon as another --max-m... knob appeared."""
    result = run_cli("serve", "--max-message", "1MiB")
    assert_one_line_error(result, "fastws serve: error: unrecognized arguments")


def test_missing_command_exits_2() -> None:
    assert_one_line_error(run_cli(), "fastws: error: ")


def test_missing_app_module_exits_2_without_traceback() -> None:
    result = run_cli("serve", "nosuchmodule:app")
    line = assert_one_line_error(result, "fastws: ")
    assert line == "fastws: cannot import APP 'nosuchmodule:app': No module named 'nosuchmodule'"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def handler(ws):\n    pass\n", "is not an async function"),
        ("async def handler(ws, extra):\n    pass\n", "takes 2 parameters"),
    ],
    ids=["not-async", "two-parameters"],
)
def test_a_handler_that_cannot_work_exits_2_at_start(
    tmp_path: Path, source: str, expected: str
) -> None:
    """Issue 18 item 3: a handler every connection would fail with (1011) stops `fastws
    serve` at start, with one line naming APP and what is wrong."""
    (tmp_path / "badapp.py").write_text(source)
    result = run_cli("serve", "badapp:handler", cwd=tmp_path)
    line = assert_one_line_error(result, "fastws: APP 'badapp:handler' cannot serve: ")
    assert expected in line


def test_app_without_colon_exits_2() -> None:
    line = assert_one_line_error(run_cli("serve", "nosuchmodule"), "fastws: cannot import APP")
    assert "expected 'module:attribute'" in line


def test_bad_process_request_exits_2_naming_the_flag() -> None:
    result = run_cli("serve", "--process-request", "nosuchmodule:hook")
    line = assert_one_line_error(result, "fastws serve: error: ")
    assert "--process-request" in line and "No module named 'nosuchmodule'" in line


@pytest.mark.parametrize("workers", ["0", "2"])
def test_missing_certfile_exits_2_with_one_line(tmp_path: Path, workers: str) -> None:
    """A TLS file that cannot be loaded is a configuration error, reported once by the command
    (before any worker is forked), not a traceback per worker and a respawn loop."""
    missing = tmp_path / "missing.pem"
    result = run_cli("serve", "--certfile", str(missing), "--port", "0", "--workers", workers)
    line = assert_one_line_error(result, "fastws serve: error: cannot load TLS certificate/key")
    assert str(missing) in line and "No such file or directory" in line


def test_keyfile_that_is_not_a_key_exits_2(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    result = run_cli("serve", "--certfile", str(junk), "--port", "0")
    assert_one_line_error(result, "fastws serve: error: cannot load TLS certificate/key")


@pytest.mark.parametrize("workers", ["0", "2"])
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--host", "999.1.1.1"), "fastws serve: error: --host 999.1.1.1: "),
        (("--fd", "99"), "fastws serve: error: --fd 99: Bad file descriptor"),
    ],
    ids=["host", "fd"],
)
def test_a_bad_listening_option_is_named_in_one_line(
    workers: str, args: tuple[str, ...], expected: str
) -> None:
    """Issue 18 item 13: an address that is not one, a file descriptor that is not open:
    one line naming the option, exit status 1, in both process models."""
    result = run_cli("serve", *args, "--port", "0", "--workers", workers)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    # The master logs it (timestamp, level, logger); --workers 0 prints it.
    assert expected.removeprefix("fastws serve: error: ") in lines[0]
    if workers == "0":
        assert lines[0].startswith(expected), lines[0]


@pytest.mark.parametrize("workers", ["0", "2"])
def test_redis_broker_without_the_redis_extra_is_one_line(workers: str) -> None:
    """Issue 18 item 13: --broker redis://... where the redis package is missing (simulated
    by hiding it) is a configuration error naming --broker, not a traceback per process."""
    code = (
        "import sys; sys.modules['redis'] = None\nfrom fastws.cli import main\nsys.exit(main())\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FASTWS_")}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "serve",
            "--broker",
            "redis://127.0.0.1:1/0",
            "--workers",
            workers,
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(environ, PYTHONPATH=str(ROOT)),
        timeout=60,
    )
    line = assert_one_line_error(result, "fastws serve: error: invalid value for broker")
    assert "--broker" in line and "pip install 'fastws[redis]'" in line


def test_port_in_use_exits_1_with_one_line() -> None:
    """An address already taken: one line naming it, exit status 1, in both process models."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        for workers in ("0", "1"):
            result = run_cli("serve", "--port", port, "--workers", workers)
            assert result.returncode == 1, result.stderr
            assert "Traceback" not in result.stderr
            [line] = result.stderr.splitlines()
            assert "address already in use" in line.lower(), line


def test_unknown_env_var_warning_is_logged_before_the_error() -> None:
    """The typo warning uses the fastws log format and shows even when startup then fails."""
    result = run_cli("serve", "--port", "x", FASTWS_PROT="1")
    assert result.returncode == 2
    warning, error = result.stderr.splitlines()
    assert warning.endswith(
        " WARNING fastws.config: ignoring unknown environment variable FASTWS_PROT"
        " (did you mean FASTWS_PORT?)"
    )
    assert error.startswith("fastws serve: error: ")


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("fastws ")
    assert result.stdout.split()[1]


def test_serve_help_lists_every_knob_with_default_and_env_var() -> None:
    result = run_cli("serve", "--help", COLUMNS="100")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # undo line wrapping
    for option in Config.options():
        assert f"{option.flag} {option.metavar}" in text
        assert f"(default: {option.default_text}; env: {option.env})" in text
    assert cli.DEFAULT_APP in text


def test_console_script_entry_point_is_main() -> None:
    """pyproject's `fastws = "fastws.cli:main"` must keep pointing at a callable."""
    text = (ROOT / "pyproject.toml").read_text()
    assert 'fastws = "fastws.cli:main"' in text
    assert callable(cli.main)
