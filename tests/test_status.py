"""`fastws status`'s table (fastws.status), from a /metrics text as a server renders it: a row
per worker slot with its process, a total that is the sum of the slots, and the close codes
in use. tests/process/test_metrics.py runs the command against a real server.
"""

from __future__ import annotations

from fastws.stats import counters, metrics
from fastws.stats.metrics import SlotRow, Snapshot, WorkerRow
from fastws.status import table


def values(**named: int) -> list[int]:
    out = [0] * counters.SIZE
    for name, value in named.items():
        out[counters.NAMES.index(name)] = value
    return out


def test_a_row_per_worker_slot_and_their_sum() -> None:
    zero = values(connections_open=2, messages_in=5)
    one = values(connections_open=1, messages_in=7)
    zero[counters.close_index(1000)] = 4
    one[counters.close_index(4000)] = 1
    snap = Snapshot(
        workers=[
            WorkerRow(101, 0, "ready", 12.0, 0.1, zero),
            WorkerRow(102, 1, "ready", 3.0, 0.1, one),
        ],
        totals=[a + b for a, b in zip(zero, one, strict=True)],
        slots=[SlotRow(0, (101,), 12.0, 0.1, zero), SlotRow(1, (102,), 3.0, 0.1, one)],
    )
    lines = table(metrics.prometheus(snap)).splitlines()
    assert lines[0].split()[:4] == ["worker", "pid", "state", "uptime"]
    rows = {line.split()[0]: line.split() for line in lines[1:-1]}
    assert rows["0"][:6] == ["0", "101", "ready", "12s", "2", "0"]
    assert rows["1"][:4] == ["1", "102", "ready", "3s"]
    assert rows["total"][1] == "3"  # connections open: 2 + 1
    assert rows["total"][3] == "12"  # messages in: 5 + 7
    assert lines[-1] == "close codes: 1000: 4, other: 1"
