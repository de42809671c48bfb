"""What one keepalive ping costs during bench.million's hold, per side (issue 21).

A ping at scale is a write by the server, a read and a write by the client, a read by the
server, and whatever TCP adds (pure ACKs). On loopback both ends' kernel work lands in the
CPU time of whichever process made the system call (a write runs the receiver's TCP input
too), so the figures are per ping for the two sides together and split only as the kernel
accounts it. Counted over the hold, machine-wide where the kernel only counts that way:

- CPU: user and system seconds of the server's processes and of the generators';
- context switches of each side (voluntary: a process slept in epoll_wait and was woken;
  involuntary: it was preempted);
- TCP segments sent, pure ACKs received, delayed ACKs sent (nstat's TcpOutSegs,
  TcpExtTCPPureAcks/TCPHPAcks, TcpExtDelayedACKs; machine-wide, so other traffic counts);
- the whole machine's busy time by kind (/proc/stat): interrupt and softirq time, which the
  kernel charges to no process (on loopback much of TCP's receive path runs there), steal
  (the hypervisor), and what is left for everything else (the harness, kernel threads,
  other programs);
- with --count-syscalls and `perf` present: each side's system calls by kind (epoll_wait
  and epoll_pwait, read, write, all), from the kernel's tracepoints (`perf stat`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["Snapshot", "SyscallCount", "per_ping"]

CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Tcp (/proc/net/snmp) and TcpExt (/proc/net/netstat) counters of a ping's segments.
TCP = ("OutSegs", "InSegs", "RetransSegs")
TCPEXT = ("DelayedACKs", "TCPPureAcks", "TCPHPAcks", "TCPHPHits", "DelayedACKLocked")
#: perf tracepoints counted per side.
EVENTS = (
    "syscalls:sys_enter_epoll_wait",
    "syscalls:sys_enter_epoll_pwait",
    "syscalls:sys_enter_read",
    "syscalls:sys_enter_write",
    "raw_syscalls:sys_enter",
)


def _group(pids: list[int]) -> dict[str, float]:
    """User and system CPU seconds, voluntary and involuntary context switches, summed."""
    out = dict.fromkeys(("user", "sys", "vcsw", "ivcsw"), 0.0)
    for p in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            out["user"] += int(fields[11]) / CLK_TCK
            out["sys"] += int(fields[12]) / CLK_TCK
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches"):
                    out["vcsw"] += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches"):
                    out["ivcsw"] += int(line.split()[1])
    return out


def _tcp() -> dict[str, int]:
    out: dict[str, int] = {}
    for path, prefix, names in (
        ("/proc/net/snmp", "Tcp:", TCP),
        ("/proc/net/netstat", "TcpExt:", TCPEXT),
    ):
        lines = Path(path).read_text().splitlines()
        for head, values in zip(lines[::2], lines[1::2], strict=False):
            if head.startswith(prefix):
                row = dict(zip(head.split()[1:], values.split()[1:], strict=False))
                out.update({k: int(row.get(k, 0)) for k in names})
    return out


#: The fields of /proc/stat's "cpu" line, in order (seconds of all cores since boot).
MACHINE = ("user", "nice", "sys", "idle", "iowait", "irq", "softirq", "steal")


def _machine() -> dict[str, float]:
    """The whole machine's CPU seconds by kind. Interrupt and softirq time (with the
    kernel's IRQ time accounting) is charged to no process: on loopback that is much of
    TCP's receive path, which neither side's own figures then include."""
    first = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return {k: int(v) / CLK_TCK for k, v in zip(MACHINE, first, strict=False)}


class Snapshot:
    """The counters at one moment: subtract two to get the hold's."""

    def __init__(self, server: list[int], clients: list[int]) -> None:
        self.server = _group(server)
        self.clients = _group(clients)
        self.tcp = _tcp()
        self.machine = _machine()


class SyscallCount:
    """`perf stat` counting system calls by kind on each side until `stop()`; None when perf
    is missing or refuses (not root, tracepoints unavailable)."""

    def __init__(self, sides: dict[str, list[int]]) -> None:
        self._procs: dict[str, subprocess.Popen[str]] = {}
        perf = shutil.which("perf")
        if perf is None:
            return
        for side, pids in sides.items():
            if not pids:
                continue
            argv = [perf, "stat", "-x", ",", "--no-big-num", "-e", ",".join(EVENTS)]
            argv += ["-p", ",".join(map(str, pids))]
            self._procs[side] = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )

    def stop(self) -> dict[str, dict[str, int]] | None:
        """Each side's counts: {side: {event: count}}."""
        if not self._procs:
            return None
        out: dict[str, dict[str, int]] = {}
        for side, proc in self._procs.items():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(2)  # perf prints its counts on SIGINT
            try:
                _, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            counts: dict[str, int] = {}
            for line in err.splitlines():
                f = line.split(",")
                if len(f) > 2 and f[2] in EVENTS and f[0].isdigit():
                    counts[f[2].split(":")[1].removeprefix("sys_enter_")] = int(f[0])
            out[side] = counts
        return out


def per_ping(
    a: Snapshot, b: Snapshot, pings: int, syscalls: dict[str, dict[str, int]] | None
) -> dict[str, Any]:
    """Everything between snapshots `a` and `b`, per ping (CPU in microseconds)."""
    if not pings:
        return {}
    out: dict[str, Any] = {}
    for side in ("server", "clients"):
        x, y = getattr(a, side), getattr(b, side)
        d = {k: y[k] - x[k] for k in x}
        out[side] = {
            "user_us": round(d["user"] / pings * 1e6, 2),
            "sys_us": round(d["sys"] / pings * 1e6, 2),
            "cpu_us": round((d["user"] + d["sys"]) / pings * 1e6, 2),
            "voluntary_switches": round(d["vcsw"] / pings, 3),
            "involuntary_switches": round(d["ivcsw"] / pings, 3),
        }
        if syscalls and side in syscalls:
            s = syscalls[side]
            epoll = s.get("epoll_wait", 0) + s.get("epoll_pwait", 0)
            out[side]["syscalls"] = round(s.get("sys_enter", 0) / pings, 3)
            out[side]["epoll_waits"] = round(epoll / pings, 3)
            out[side]["reads"] = round(s.get("read", 0) / pings, 3)
            out[side]["writes"] = round(s.get("write", 0) / pings, 3)
    out["tcp"] = {k: round((b.tcp[k] - a.tcp[k]) / pings, 3) for k in a.tcp}
    m = {k: b.machine[k] - a.machine[k] for k in a.machine}
    busy = sum(v for k, v in m.items() if k not in ("idle", "iowait"))
    both = sum(out[side]["cpu_us"] for side in ("server", "clients"))
    out["machine"] = {
        "busy_us": round(busy / pings * 1e6, 2),
        "irq_softirq_us": round((m["irq"] + m["softirq"]) / pings * 1e6, 2),
        "steal_us": round(m["steal"] / pings * 1e6, 2),
        # what is left: the harness, kernel threads, other programs (machine-wide)
        "other_us": round((busy - m["irq"] - m["softirq"] - m["steal"]) / pings * 1e6 - both, 2),
    }
    return out
