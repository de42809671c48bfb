"""fastws.logs: the stderr handler, JSON lines, and configuration files."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from fastws import logs


@pytest.fixture
def fastws_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("fastws")
    saved = logger.handlers[:], logger.level
    yield logger
    logger.handlers[:], logger.level = saved[0], saved[1]


def test_json_lines_carry_extra_fields_and_exceptions(fastws_logger: logging.Logger) -> None:
    """--log-format json: one object per line, the record's extra fields as keys."""
    logs.configure("info", fmt="json")
    [handler] = [h for h in fastws_logger.handlers if isinstance(h, logs.StderrHandler)]
    stream = io.StringIO()
    handler.setStream(stream)
    logging.getLogger("fastws.access").info("a %s", "line", extra={"status": 101})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        fastws_logger.exception("failed")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "a line" and first["status"] == 101
    assert (first["logger"], first["level"]) == ("fastws.access", "INFO")
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert "RuntimeError: boom" in second["exception"]


def test_configure_again_replaces_its_handler(fastws_logger: logging.Logger) -> None:
    """Calling configure twice leaves one handler, at the last level."""
    logs.configure("debug")
    logs.configure("error")
    ours = [h for h in fastws_logger.handlers if isinstance(h, logs.StderrHandler)]
    assert len(ours) == 1 and fastws_logger.level == logging.ERROR


def test_unusable_config_file_raises_value_error_naming_it(tmp_path: Path) -> None:
    """A list instead of a dictConfig dict, or a broken INI file: ValueError with the path."""
    wrong = tmp_path / "x.json"
    wrong.write_text("[]")
    with pytest.raises(ValueError, match=r"x\.json.*JSON object"):
        logs.configure(config_file=str(wrong))
    broken = tmp_path / "x.ini"
    broken.write_text("[loggers]\nkeys=root\n")
    with pytest.raises(ValueError, match=r"x\.ini"):
        logs.configure(config_file=str(broken))


def test_run_applies_log_format_and_config_when_given(
    fastws_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fastws.run(..., log_format="json") sets logging up as the command line does; without
    either option run() leaves the application's logging alone."""
    from fastws import launch

    monkeypatch.setattr(launch, "launch", lambda *args, **kwargs: 0)
    fastws_logger.handlers[:] = []
    launch.run(lambda ws: None, workers=0)
    assert not fastws_logger.handlers
    launch.run(lambda ws: None, workers=0, log_format="json")
    [handler] = fastws_logger.handlers
    assert isinstance(handler.formatter, logs.JSONFormatter)
