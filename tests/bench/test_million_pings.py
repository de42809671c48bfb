"""bench/million_pings.py: what one keepalive ping costs each side, from counters read before
and after bench.million's hold."""

from __future__ import annotations

import os
import time

from bench.million_pings import Snapshot, per_ping


def test_snapshot_reads_a_live_process_cpu_and_switches() -> None:
    """A snapshot of this process sees the CPU it burns (user time) and the sleeps it makes
    (voluntary context switches), and reads the machine's TCP counters and CPU time."""
    me = [os.getpid()]
    before = Snapshot(me, [])
    end = time.process_time() + 0.1
    while time.process_time() < end:
        pass
    for _ in range(5):
        time.sleep(0.001)
    after = Snapshot(me, [])
    assert after.server["user"] + after.server["sys"] > before.server["user"] + before.server["sys"]
    assert after.server["vcsw"] >= before.server["vcsw"] + 5
    assert after.clients == dict.fromkeys(("user", "sys", "vcsw", "ivcsw"), 0.0)
    assert {"OutSegs", "DelayedACKs", "TCPHPAcks", "TCPPureAcks"} <= set(after.tcp)
    assert after.tcp["OutSegs"] >= before.tcp["OutSegs"]
    assert after.machine["user"] + after.machine["sys"] > before.machine["user"]


def _snapshot(cpu: float, switches: float, segments: int) -> Snapshot:
    s = Snapshot.__new__(Snapshot)
    s.server = {"user": cpu, "sys": 2 * cpu, "vcsw": switches, "ivcsw": 0.0}
    s.clients = {"user": 0.0, "sys": cpu, "vcsw": 2 * switches, "ivcsw": switches}
    s.tcp = {"OutSegs": segments, "DelayedACKs": segments // 10}
    s.machine = {"user": 4 * cpu, "nice": 0.0, "sys": 4 * cpu, "idle": 10 * cpu, "iowait": 0.0}
    s.machine |= {"irq": 0.0, "softirq": cpu, "steal": 0.0}
    return s


def test_per_ping_divides_the_hold_by_its_pings() -> None:
    """Each figure is the hold's difference divided by its pings (CPU in microseconds), each
    side on its own; system calls, when counted, split by kind, epoll_wait and epoll_pwait
    together."""
    a, b = _snapshot(1.0, 100, 1_000), _snapshot(1.5, 1_100, 4_000)
    syscalls = {
        "server": {
            "epoll_wait": 0,
            "epoll_pwait": 50,
            "read": 1000,
            "write": 1000,
            "sys_enter": 2100,
        },
        "clients": {
            "epoll_wait": 100,
            "epoll_pwait": 0,
            "read": 1000,
            "write": 1000,
            "sys_enter": 2200,
        },
    }
    out = per_ping(a, b, 1000, syscalls)
    assert out["server"]["user_us"] == 500.0 and out["server"]["sys_us"] == 1000.0
    assert out["server"]["cpu_us"] == 1500.0 and out["server"]["voluntary_switches"] == 1.0
    assert out["clients"]["cpu_us"] == 500.0 and out["clients"]["involuntary_switches"] == 1.0
    assert out["server"]["epoll_waits"] == 0.05 and out["clients"]["epoll_waits"] == 0.1
    assert out["server"]["syscalls"] == 2.1 and out["clients"]["reads"] == 1.0
    assert out["tcp"] == {"OutSegs": 3.0, "DelayedACKs": 0.3}
    # The machine: busy 4.5 s (idle excluded), 0.5 of it softirq (charged to no process),
    # 2.0 s in the two sides, so 2.0 s elsewhere.
    assert out["machine"] == {
        "busy_us": 4500.0,
        "irq_softirq_us": 500.0,
        "steal_us": 0.0,
        "other_us": 2000.0,
    }
    assert "syscalls" not in per_ping(a, b, 1000, None)["server"]
    assert per_ping(a, b, 0, syscalls) == {}
