"""/metrics as Prometheus reads it (issue 18 item 12), from a real scoreboard page: parsed with
prometheus_client's own parser, one name has one meaning (every series of a metric carries
the same labels, none is a total of the others), and the `worker` label is the worker slot,
stable across a restart or a reload, whose counters never go backwards.

Worker processes are stood in for by writing their slots as a worker would (`beat`); the real
server's /metrics is parsed the same way in tests/process/test_metrics.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastws.stats import counters, metrics
from fastws.stats.scoreboard import READY, Scoreboard


@pytest.fixture
def board() -> Iterator[Scoreboard]:
    saved = list(counters.values)
    board = Scoreboard(8)
    yield board
    board.close()
    counters.values[:] = saved


def start_worker(board: Scoreboard, listener: int, pid: int, messages_in: int) -> int:
    """Claim a scoreboard slot for worker slot `listener` and publish counts, as a worker does."""
    slot = board.claim(listener)
    board.set_pid(slot, pid)
    counters.reset()
    counters.values[counters.MESSAGES_IN] = messages_in
    counters.values[counters.CONNECTIONS_OPEN] = 1
    counters.values[counters.close_index(1000)] = messages_in
    board.beat(slot, READY)
    return slot


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus' parser: family name -> [(labels, value)] for every sample."""
    families = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = [(dict(s.labels), s.value) for s in family.samples]
    return families


def check_conventions(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """What every /metrics must satisfy: parseable, HELP and TYPE for each family, no
    duplicate series, the same label names on every series of a family."""
    families = parse(text)
    assert families, text
    for name, samples in families.items():
        assert f"# HELP {name}" in text and f"# TYPE {name}" in text
        keys = [tuple(sorted(labels.items())) for labels, _ in samples]
        assert len(keys) == len(set(keys)), f"duplicate series in {name}"
        assert len({tuple(sorted(labels)) for labels, _ in samples}) <= 1, name
    return families


def series(families: dict[str, list[tuple[dict[str, str], float]]], name: str) -> dict[str, float]:
    """{worker label: value} of a metric without other labels."""
    return {labels["worker"]: value for labels, value in families[name]}


def test_one_series_per_worker_slot_and_no_unlabelled_total(board: Scoreboard) -> None:
    """Two workers: each metric has worker="0" and worker="1" (slots, not pids), and summing
    them gives the server's total: nothing counted twice."""
    start_worker(board, 0, pid=4321, messages_in=5)
    start_worker(board, 1, pid=4322, messages_in=7)
    families = check_conventions(metrics.prometheus(metrics.snapshot(board)))
    assert series(families, "fastws_messages_in") == {"0": 5, "1": 7}
    assert series(families, "fastws_connections_open") == {"0": 1, "1": 1}
    assert (
        sum(series(families, "fastws_messages_in").values()) == board.totals()[counters.MESSAGES_IN]
    )
    info = {(labels["worker"], labels["pid"]) for labels, _ in families["fastws_worker_info"]}
    assert info == {("0", "4321"), ("1", "4322")}
    closes = {
        (labels["worker"], labels["code"]): value for labels, value in families["fastws_closes"]
    }
    assert closes[("0", "1000")] == 5 and closes[("1", "1011")] == 0


def test_a_restarted_worker_keeps_its_series_and_its_counters_do_not_go_back(
    board: Scoreboard,
) -> None:
    """The worker of slot 0 exits (its counts retired) and a new one starts in the same slot:
    the same series continue, the counter includes what the old worker counted, and the
    gauges are the new worker's alone."""
    old = start_worker(board, 0, pid=100, messages_in=5)
    start_worker(board, 1, pid=101, messages_in=7)
    before = series(parse(metrics.prometheus(metrics.snapshot(board))), "fastws_messages_in")
    board.retire(old)
    start_worker(board, 0, pid=102, messages_in=2)
    families = check_conventions(metrics.prometheus(metrics.snapshot(board)))
    after = series(families, "fastws_messages_in")
    assert set(after) == set(before) == {"0", "1"}
    assert after == {"0": 5 + 2, "1": 7}
    assert series(families, "fastws_connections_open") == {"0": 1, "1": 1}


def test_during_a_reload_two_processes_share_a_slot_without_duplicate_series(
    board: Scoreboard,
) -> None:
    """HUP: the new worker of a slot serves beside the old one until the old one stops; the
    slot's series add both, and worker_info lists both processes."""
    start_worker(board, 0, pid=200, messages_in=3)
    start_worker(board, 0, pid=201, messages_in=4)
    families = check_conventions(metrics.prometheus(metrics.snapshot(board)))
    assert series(families, "fastws_messages_in") == {"0": 7}
    assert [value for _, value in families["fastws_workers"]] == [2]
    assert sorted(labels["pid"] for labels, _ in families["fastws_worker_info"]) == ["200", "201"]


def test_a_single_process_server_is_worker_0(board: Scoreboard) -> None:
    """--workers 0 (no scoreboard): the process is worker slot 0."""
    counters.reset()
    counters.values[counters.MESSAGES_IN] = 3
    families = check_conventions(metrics.prometheus(metrics.snapshot(None)))
    assert series(families, "fastws_messages_in") == {"0": 3}
