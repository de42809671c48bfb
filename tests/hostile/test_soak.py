"""Smoke run of the soak (bench/soak.py): a few seconds of connect/echo/close churn leave the
server with the fds it had and no RSS growth beyond slack. The real run is a minute or more:
`python -m bench.soak --duration 60`."""

from __future__ import annotations

import pytest

from bench import soak


def test_churn_returns_fds_and_memory_to_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    """Every connection the churn opened is gone afterwards (fds back to baseline), every echo
    came back, and RSS grew by less than the slack."""
    status = soak.main(["--duration", "3", "--concurrency", "10", "--rss-slack", "16"])
    report = capsys.readouterr().out
    print(report)
    assert status == 0, report
    assert '"connections": 0' not in report
