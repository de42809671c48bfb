"""One million concurrent WebSocket connections to one `fastws serve` on this machine (issue 21).

One command runs it all and writes a results folder (result.json, report.md, plots):

    python -m bench.million                            # 1,000,000 connections
    python -m bench.million --connections 100000 --hold 60
    python -m bench.million --smoke --out /tmp/m       # seconds: 3,000 over 4 workers, 3 clients

1. Kernel settings that matter are read and reported (ip_local_port_range, somaxconn,
   tcp_mem, file-max/nr_open, conntrack, open-file limit); one is changed only when the run
   needs it, we are root and it is allowed (--no-sysctl forbids it), and the report says so;
   changed values are restored at the end.
2. `fastws serve bench.million_app:Million` (--app coroutine: `:handler`) with >= 50 workers
   (each below the open-file limit): every connection subscribes to one channel and echoes.
3. Load generator processes (bench/c/million.c, built at run time), each below the open-file
   limit, open the connections with real handshakes from many 127.0.0.x source addresses,
   hold them, answer every keepalive ping (the server pings every 30 s) and, on a sample of
   connections spread over all processes, echo a text message per second, checked byte for
   byte, with its round trip timed.
4. While ramping: handshakes/s, server RSS and CPU against connections (the plot); at N:
   server RSS and PSS per connection over the idle baseline (master + workers), kernel memory
   (slab, TCP buffers from /proc/net/sockstat) per connection, the worker spread.
5. Hold --hold seconds: keepalive pings/s and the server CPU share they cost.
6. A broadcast to all connections: one channel, --broadcasts messages of 64 B at 1/s
   (published by a /publish connection); deliveries counted and checked byte for byte, and
   the time from each publish to its last delivery.
7. The generators, then the server, are stopped by PID; the run has a time bound
   (--max-minutes) and stops ramping before the machine runs short of memory
   (--min-free-gib; below it the run is aborted).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import hashlib
import itertools
import json
import math
import os
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .build import build
from .idle import metrics
from .million_pings import Snapshot, SyscallCount, per_ping
from .procs import cpu_seconds, descendants, free_port

ROOT = Path(__file__).resolve().parent.parent
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
GIB = 2**30
#: The generator binds (127.0.0.x, port) pairs of its own from this port up, below the
#: ephemeral range, so other programs keep every ephemeral port.
PORT_BASE = 10_000
#: Set (to the host's TCP established hash size) in the run --ehash starts in its own network
#: namespace.
NETNS_ENV = "BENCH_MILLION_NETNS"
#: Connections per worker we aim at, below the 20,000 descriptors of a process.
PER_WORKER = 16_000
#: --app: bench.million_app's callback-style listener (no task per connection) or its
#: coroutine handler.
APPS = {"listener": "Million", "coroutine": "handler"}
#: Connections per generator process.
PER_CLIENT = 18_000
#: Slab caches that grow with sockets: the TCP socket itself, its inode, dentry and file, the
#: epoll items watching it, LSM blobs, small kmallocs (the others, e.g. proc_inode_cache from
#: reading /proc, are the measurement's own noise).
SOCKET_SLABS = re.compile(
    r"TCP$|sock_inode|dentry$|filp$|eventpoll|ep_head|lsm_|kmalloc-|skbuff|tcp_bind"
)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- /proc and /sys ------------------------------------------------------------------------------


def sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", *name.split(".")).read_text().strip()
    except OSError:
        return None


def set_sysctl(name: str, value: str) -> None:
    Path("/proc/sys", *name.split(".")).write_text(value + "\n")


def meminfo() -> dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        out[key] = int(rest.split()[0]) * 1024
    return out


def sockstat() -> dict[str, int]:
    text = Path("/proc/net/sockstat").read_text()
    tcp = re.search(r"^TCP: (.*)$", text, re.M)
    out = {}
    if tcp:
        parts = tcp[1].split()
        out = {parts[i]: int(parts[i + 1]) for i in range(0, len(parts) - 1, 2)}
    used = re.search(r"sockets: used (\d+)", text)
    out["sockets_used"] = int(used[1]) if used else 0
    return out


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores (/proc/stat)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = f[3] + f[4]
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(f[:8]) - idle) / hz, sum(f[:8]) / hz


#: TcpExt counters that say the kernel dropped or refused something (/proc/net/netstat).
NETSTAT = (
    "ListenOverflows", "ListenDrops", "TCPAbortOnMemory", "TCPMemoryPressures",
    "TCPBacklogDrop", "TCPRcvQDrop", "TCPAbortOnTimeout", "TCPTimeouts", "TCPSynRetrans",
)  # fmt: skip


def kernel_counters() -> dict[str, int]:
    """TcpExt drop/pressure counters and softnet backlog drops, machine-wide, cumulative."""
    out: dict[str, int] = {}
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            row = dict(zip(names.split()[1:], map(int, values.split()[1:]), strict=False))
            out = {k: row.get(k, 0) for k in NETSTAT}
    with contextlib.suppress(OSError):
        out["softnet_dropped"] = sum(
            int(line.split()[1], 16)
            for line in Path("/proc/net/softnet_stat").read_text().splitlines()
        )
    return out


def slabs() -> dict[str, int]:
    """Bytes of each slab cache (num_objs x objsize); empty if /proc/slabinfo is unreadable."""
    out = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/slabinfo").read_text().splitlines()[2:]:
            f = line.split()
            out[f[0]] = int(f[2]) * int(f[3])
    return out


def proc_memory(pids: list[int], pss: bool) -> tuple[int, int]:
    """(VmRSS, Pss) summed, bytes; Pss only when asked (smaps_rollup walks page tables)."""
    rss = total_pss = 0
    for pid in pids:
        with contextlib.suppress(OSError, TypeError):
            status = Path(f"/proc/{pid}/status").read_text()
            rss += int(re.search(r"VmRSS:\s+(\d+)", status)[1]) * 1024  # type: ignore[index]
            if pss:
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
                total_pss += int(re.search(r"Pss:\s+(\d+)", rollup)[1]) * 1024  # type: ignore[index]
    return rss, total_pss


def monitoring(port: int) -> dict[str, Any]:
    """/metrics and the dashboard's feed with every connection open: how long each takes to
    answer, how big it is, and whether it accounts for every worker and connection. The
    dashboard's viewer is not counted among the connections it shows."""
    out: dict[str, Any] = {}
    start = time.monotonic()
    try:
        m = metrics(port)
    except OSError as exc:
        out["metrics_error"] = f"{type(exc).__name__}: {exc}"
    else:
        open_ = per_worker(m, "fastws_connections_open")
        out["metrics_s"] = round(time.monotonic() - start, 3)
        out["metrics_workers"] = len(open_)
        out["metrics_connections_open"] = round(sum(open_.values()))
    try:
        from websockets.sync.client import connect

        start = time.monotonic()
        with connect(f"ws://127.0.0.1:{port}/dashboard", open_timeout=30, max_size=None) as ws:
            out["dashboard_open_s"] = round(time.monotonic() - start, 3)
            texts = [ws.recv(timeout=30) for _ in range(3)]
            out["dashboard_three_snapshots_s"] = round(time.monotonic() - start, 3)
        snap = json.loads(texts[-1])
        out["dashboard_snapshot_bytes"] = len(texts[-1])
        out["dashboard_workers"] = len(snap["workers"])
        out["dashboard_connections_open"] = snap["total"]["counters"]["connections_open"]
        out["dashboard_rss"] = snap["total"]["rss"]
    except Exception as exc:  # reported, never fatal: the run's other figures stand
        out["dashboard_error"] = f"{type(exc).__name__}: {exc}"
    return out


def metrics_or_empty(port: int) -> dict[tuple[str, str], float]:
    """/metrics, or nothing when the server is too busy to answer in time (reported as such)."""
    try:
        return metrics(port)
    except OSError as exc:
        log(f"/metrics did not answer: {exc}")
        return {}


def per_worker(m: dict[tuple[str, str], float], name: str) -> dict[str, float]:
    return {lab.split('"')[1]: v for (n, lab), v in m.items() if n == name and "worker=" in lab}


def set_autogroup_nice(pid: int, nice: int) -> str:
    """Give the scheduler autogroup (session) of `pid` this nice value; say what happened.

    With kernel.sched_autogroup_enabled every session shares one CPU weight: the server's 50+
    workers together weigh as much as one shell running a test. --nice changes that weight
    for the server's session and ours (the load generators), nothing else's."""
    path = Path(f"/proc/{pid}/autogroup")
    try:
        before = path.read_text().strip()
        path.write_text(str(nice))
        return f"{before} -> {path.read_text().strip()}"
    except OSError as exc:
        return f"not changed ({exc.strerror})"


# -- kernel settings ---------------------------------------------------------------------------


def conntrack_tracks_loopback() -> bool | None:
    """Whether new loopback TCP connections get conntrack entries (None: no conntrack)."""
    count = sysctl("net.netfilter.nf_conntrack_count")
    if count is None:
        return None
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(200)
        before = int(sysctl("net.netfilter.nf_conntrack_count") or 0)
        socks = [socket.create_connection(server.getsockname()) for _ in range(100)]
        after = int(sysctl("net.netfilter.nf_conntrack_count") or 0)
        for s in socks:
            s.close()
    return after - before >= 50


@dataclass
class Kernel:
    """What the run needs from the kernel: checked, reported, set only where allowed."""

    connections: int
    may_set: bool
    ephemeral: bool
    sources: int
    backlog: int
    before: dict[str, str | None] = field(default_factory=dict)
    changed: dict[str, tuple[str, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    NAMES = (
        "net.ipv4.ip_local_port_range",
        "net.core.somaxconn",
        "net.ipv4.tcp_max_syn_backlog",
        "net.ipv4.tcp_mem",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
        "net.ipv4.tcp_max_tw_buckets",
        "net.ipv4.tcp_ehash_entries",
        "fs.file-max",
        "fs.nr_open",
        "fs.file-nr",
        "net.netfilter.nf_conntrack_max",
        "net.netfilter.nf_conntrack_count",
    )

    def check(self) -> None:
        self.before = {name: sysctl(name) for name in self.NAMES}
        root = os.geteuid() == 0
        n = self.connections
        low, high = map(int, (self.before["net.ipv4.ip_local_port_range"] or "32768 60999").split())
        if self.ephemeral:
            if n / self.sources > 0.9 * (high - low + 1):
                self._set("net.ipv4.ip_local_port_range", "1024\t65535", root, "ephemeral ports")
        else:
            self.notes.append(
                f"ip_local_port_range {low}-{high} left alone: the generator binds its own"
                f" (127.0.0.x, port) pairs from port {PORT_BASE} up ({self.sources} addresses"
                f" x {math.ceil(n / self.sources):,} ports), below the ephemeral range"
            )
        somaxconn = int(self.before["net.core.somaxconn"] or 0)
        if somaxconn < self.backlog:
            self._set("net.core.somaxconn", str(self.backlog), root, "listen backlog")
        # Every connection is two descriptors on this machine: the server's and the client's.
        file_max = int(self.before["fs.file-max"] or 0)
        in_use = int((self.before["fs.file-nr"] or "0").split()[0])
        need = 2 * n + in_use + 100_000
        if file_max < need:
            self._set("fs.file-max", str(need), root, f"2 x {n:,} descriptors")
        tracks = conntrack_tracks_loopback()
        self.before["conntrack_tracks_loopback"] = str(tracks)
        if tracks:
            ct_max = int(self.before["net.netfilter.nf_conntrack_max"] or 0)
            if ct_max < 1.1 * n:
                self._set(
                    "net.netfilter.nf_conntrack_max", str(int(1.1 * n)), root, "conntrack entries"
                )
        elif tracks is False:
            self.notes.append("conntrack is loaded but does not track loopback connections")
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.before["RLIMIT_NOFILE"] = f"{soft} {hard}"
        ehash = abs(int(self.before["net.ipv4.tcp_ehash_entries"] or 0))
        if os.environ.get(NETNS_ENV):
            self.notes.append(
                f"ran in a network namespace of its own (--ehash): its TCP established hash"
                f" has {ehash:,} buckets (the host's: {int(os.environ[NETNS_ENV]):,}), for"
                f" {2 * n:,} sockets (both ends are on this machine)"
            )
        elif ehash:
            self.notes.append(
                f"TCP established hash: {ehash:,} buckets (sized at boot from memory) for"
                f" {2 * n:,} sockets (both ends are on this machine): every segment's lookup"
                f" walks chains of ~{2 * n / ehash:.1f}; --ehash N runs in a network namespace"
                f" with N buckets"
            )

    def _set(self, name: str, value: str, root: bool, why: str) -> None:
        old = self.before.get(name) or ""
        if not (root and self.may_set):
            self.notes.append(
                f"{name} = {old} is too low for this run ({why}: needs {value}); not changed"
                f" ({'--no-sysctl' if root else 'not root'})"
            )
            return
        try:
            set_sysctl(name, value)
        except OSError as exc:
            self.notes.append(f"{name}: could not set {value} ({exc})")
            return
        self.changed[name] = (old, value)
        self.notes.append(f"SET {name} = {value} (was {old}; {why}; restored at the end)")
        log(f"sysctl {name} = {value} (was {old}; restored at the end)")

    def restore(self) -> None:
        for name, (old, _) in self.changed.items():
            with contextlib.suppress(OSError):
                set_sysctl(name, old)
                log(f"sysctl {name} restored to {old}")


# -- the load generator processes --------------------------------------------------------------

STATUS_FIELDS = (
    "mono", "opened", "open", "failed", "pings", "echo_ok", "echo_bad", "bcast", "bcast_bad",
    "server_closed", "cpu", "rss", "echo_sent",
)  # fmt: skip


class Client:
    """One generator process: its latest status line and, at the end, its JSON result."""

    def __init__(self, argv: list[str], share: int) -> None:
        self.share = share
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.status: dict[str, float] = dict.fromkeys(STATUS_FIELDS, 0.0)
        self.final: dict[str, Any] | None = None
        self.phase_hists: list[list[list[float]]] = []  # echo round trips per "L" command
        self.gap_phases: list[dict[str, Any]] = []  # the time between pings, per "G" command
        self.stderr = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("S "):
                self.status = dict(zip(STATUS_FIELDS, map(float, line.split()[1:]), strict=False))
            elif line.startswith('{"phase_echo_ns"'):
                self.phase_hists.append(json.loads(line)["phase_echo_ns"])
            elif line.startswith('{"phase_ping_gaps"'):
                self.gap_phases.append(json.loads(line)["phase_ping_gaps"])
            elif line.startswith("{"):
                self.final = json.loads(line)
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def command(self, letter: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.write(letter + "\n")
            self.proc.stdin.flush()

    def finish(self, timeout: float) -> None:
        self.command("Q")
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)


def total(clients: list[Client], name: str) -> float:
    return sum(c.status[name] for c in clients)


# -- the publisher -----------------------------------------------------------------------------


def bcast_payload(seq: int, published: float) -> bytes:
    """64 bytes; bench/c/million.c checks the same layout (bcast_fill)."""
    head = b"FWSB" + seq.to_bytes(4, "big") + struct.pack(">d", published)
    return head + bytes((seq * 31 + i * 7) & 0xFF for i in range(16, 64))


def masked_frame(opcode: int, payload: bytes) -> bytes:
    key = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    else:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    masked = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
    return head + key + masked


class Publisher:
    """A WebSocket to the app's /publish path: each message is published to every connection."""

    def __init__(self, port: int, path: str = "/publish") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("publisher: closed during the handshake")
            data += chunk
        head, _, self.buf = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"publisher: {head.splitlines()[0]!r}")

    def publish(self, seq: int) -> float:
        published = time.monotonic()
        self.sock.sendall(masked_frame(0x2, bcast_payload(seq, published)))
        return published

    def answer_pings(self) -> None:
        self.sock.setblocking(False)
        try:
            with contextlib.suppress(BlockingIOError):
                while chunk := self.sock.recv(65536):
                    self.buf += chunk
        finally:
            self.sock.setblocking(True)
        while len(self.buf) >= 2 and len(self.buf) >= 2 + (self.buf[1] & 0x7F):
            n = self.buf[1] & 0x7F
            opcode, payload, self.buf = self.buf[0] & 0xF, self.buf[2 : 2 + n], self.buf[2 + n :]
            if opcode == 0x9:
                self.sock.sendall(masked_frame(0xA, payload))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(masked_frame(0x8, (1000).to_bytes(2, "big")))
        self.sock.close()


# -- the run -----------------------------------------------------------------------------------


def histogram_quantiles(pairs: list[list[float]], scale: float) -> dict[str, float]:
    """p50/p90/p99/p99.9/max of merged [bucket_mid, count] pairs, in units of `scale` ns."""
    merged: dict[float, int] = {}
    for mid, count in pairs:
        merged[mid] = merged.get(mid, 0) + int(count)
    n = sum(merged.values())
    out: dict[str, float] = {"count": n}
    if not n:
        return out
    ordered = sorted(merged.items())
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99_9", 0.999)):
        rank, seen = q * n, 0
        for mid, count in ordered:
            seen += count
            if seen > rank:
                out[name] = round(mid / scale, 3)
                break
    out["max"] = round(ordered[-1][0] / scale, 3)
    return out


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.series: list[dict[str, Any]] = []
        self.result: dict[str, Any] = {
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        }
        self.server: subprocess.Popen[bytes] | None = None
        self.clients: list[Client] = []
        self.stop_reason: str | None = None
        self.aborted = False
        self.deadline = time.monotonic() + args.max_minutes * 60
        self.port = free_port()
        self.out: Path = args.out
        self.out.mkdir(parents=True, exist_ok=True)

    # -- sampling ----------------------------------------------------------------------------

    def server_pids(self) -> list[int]:
        return descendants(self.server.pid) if self.server else []

    def sample(self, phase: str, pss: bool = False) -> dict[str, Any]:
        pids = self.server_pids()
        rss, pss_bytes = proc_memory(pids, pss)
        mem = meminfo()
        busy, all_cpu = machine_cpu()
        s = {
            "t": round(time.monotonic() - self.t0, 2),
            "phase": phase,
            "connections": int(total(self.clients, "open")),
            "opened": int(total(self.clients, "opened")),
            "failed": int(total(self.clients, "failed")),
            "server_closed": int(total(self.clients, "server_closed")),
            "pings": int(total(self.clients, "pings")),
            "echo_ok": int(total(self.clients, "echo_ok")),
            "echo_bad": int(total(self.clients, "echo_bad")),
            "bcast": int(total(self.clients, "bcast")),
            "server_rss": rss,
            "server_cpu": cpu_seconds(pids),
            "server_processes": len(pids),
            "client_rss": int(total(self.clients, "rss")),
            "client_cpu": total(self.clients, "cpu"),
            "mem_available": mem["MemAvailable"],
            "slab": mem["Slab"],
            "page_tables": mem.get("PageTables", 0),
            "tcp_mem_pages": sockstat().get("mem", 0),
            "machine_busy": busy,
            "machine_cpu": all_cpu,
            "loadavg": os.getloadavg()[0],
        }
        if pss:
            s["server_pss"] = pss_bytes
        self.series.append(s)
        return s

    def check_memory(self, s: dict[str, Any]) -> None:
        free = s["mem_available"] / GIB
        if free < self.args.min_free_gib and not self.aborted:
            self.aborted = True
            self.stop_reason = (
                f"aborted: MemAvailable {free:.1f} GiB < --min-free-gib {self.args.min_free_gib}"
                f" at {s['connections']:,} connections"
            )
            log(self.stop_reason)

    # -- phases ------------------------------------------------------------------------------

    def start_server(self) -> None:
        a = self.args
        argv = [
            sys.executable, "-m", "fastws", "serve", f"bench.million_app:{APPS[a.app]}",
            "--port", str(self.port), "--workers", str(a.workers), "--log-level", "warning",
            "--ping-interval", f"{a.ping_interval}s", "--graceful-timeout", f"{a.graceful_timeout}s",
            "--worker-timeout", f"{a.worker_timeout}s",
            "--backlog", str(a.backlog), "--dashboard",
        ]  # fmt: skip
        if a.ping_timeout is not None:
            argv += ["--ping-timeout", f"{a.ping_timeout}s"]
        self.server_log = open(self.out / "server.log", "wb")  # noqa: SIM115 - closed in stop
        self.server = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self.server_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if a.nice:
            self.result["autogroup_nice"] = {
                "server": set_autogroup_nice(self.server.pid, a.nice),
                "load_generator": set_autogroup_nice(os.getpid(), a.nice),
            }
            log(f"autogroup nice {a.nice}: {self.result['autogroup_nice']}")
        deadline = time.monotonic() + 60 + a.workers
        while True:
            with contextlib.suppress(OSError):
                if len(per_worker(metrics(self.port), "fastws_connections_open")) == a.workers:
                    break
            if self.server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: see {self.out / 'server.log'}")
            time.sleep(0.2)

    def baseline(self) -> None:
        time.sleep(2.0)  # the workers' imports and first heartbeats settle
        pids = self.server_pids()
        per_process = [proc_memory([p], True) for p in pids]
        self.base = self.sample("baseline", pss=True)
        self.base_slabs = slabs()
        self.base_sockstat = sockstat()
        master = per_process[0] if per_process else (0, 0)
        workers = per_process[1:]
        self.result["baseline"] = {
            "server_processes": len(pids),
            "server_rss": self.base["server_rss"],
            "server_pss": self.base["server_pss"],
            "master_rss": master[0],
            "master_pss": master[1],
            "worker_rss_mean": round(sum(w[0] for w in workers) / max(len(workers), 1)),
            "worker_pss_mean": round(sum(w[1] for w in workers) / max(len(workers), 1)),
        }
        b = self.result["baseline"]
        log(
            f"baseline: {len(pids)} processes, RSS {b['server_rss'] / 2**20:.0f} MiB,"
            f" PSS {b['server_pss'] / 2**20:.0f} MiB; a worker {b['worker_rss_mean'] / 2**20:.1f}"
            f" MiB RSS / {b['worker_pss_mean'] / 2**20:.1f} MiB PSS"
        )

    def start_clients(self) -> None:
        a = self.args
        binary = build("million")
        key = base64.b64encode(os.urandom(16)).decode()
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        n, k = a.connections, a.client_processes
        # With --batch-ms the echo sample lives in a process of its own that answers at once
        # (its round trips are the server's, not the batching's); the others batch.
        apart = bool(a.batch_ms and a.sample)
        shares = [(n - a.sample) // k + (i < (n - a.sample) % k) if apart else n // k + (i < n % k)
                  for i in range(k)]  # fmt: skip
        samples = [0] * k if apart else [a.sample // k + (i < a.sample % k) for i in range(k)]
        batches = [a.batch_ms] * k
        if apart:
            shares.append(a.sample)
            samples.append(a.sample)
            batches.append(0.0)
        first = 0
        for i, (share, sample, batch) in enumerate(zip(shares, samples, batches, strict=True)):
            argv = [
                str(binary), "--port", str(self.port), "--conns", str(share),
                "--first", str(first), "--src-base", "2", "--src-count", str(a.sources),
                "--hs-concurrency", str(max(2, a.hs_concurrency // k)),
                "--sample", str(min(sample, share)),
                "--echo-interval", str(a.echo_interval), "--echo-size", str(a.echo_size),
                "--gap-limit", str(a.ping_within),
                "--key", key, "--accept", accept, "--id", str(i),
                "--max-seconds", str(int(a.max_minutes * 60)),
            ]  # fmt: skip
            if not a.ephemeral:
                argv += ["--port-base", str(PORT_BASE)]
            if a.rate:
                argv += ["--rate", str(a.rate / k)]
            if batch:
                argv += ["--batch-ms", str(batch)]
            self.clients.append(Client(argv, share))
            first += share

    def ramp(self) -> None:
        a = self.args
        self.t_ramp = time.monotonic()
        last_progress, last_done = time.monotonic(), -1
        next_pss = 0.0
        paused = False
        while True:
            time.sleep(a.interval)
            now = time.monotonic()
            s = self.sample("ramp", pss=now >= next_pss)
            if now >= next_pss:
                next_pss = now + a.pss_every
            self.check_memory(s)
            done = s["opened"] + s["failed"]
            if done != last_done:
                last_done, last_progress = done, now
            if s["connections"] and len(self.series) % 5 == 0:
                log(
                    f"ramp: {s['connections']:,} open ({s['failed']:,} failed),"
                    f" server RSS {s['server_rss'] / GIB:.2f} GiB, MemAvailable"
                    f" {s['mem_available'] / GIB:.1f} GiB"
                )
            if self.aborted:
                return
            if not paused:
                why = None
                if s["mem_available"] / GIB < a.min_free_gib + a.pause_margin_gib:
                    why = (
                        f"MemAvailable {s['mem_available'] / GIB:.1f} GiB < --min-free-gib"
                        f" + {a.pause_margin_gib} GiB"
                    )
                elif now - last_progress > 60:
                    why = "no handshake completed or failed for 60 s"
                elif (rate := self._recent_rate(60)) is not None and rate < a.min_rate:
                    why = (
                        f"{rate:.0f} handshakes/s over the last 60 s (< --min-rate {a.min_rate:g})"
                    )
                elif now - self.t_ramp > a.ramp_timeout:
                    why = f"ramp took longer than --ramp-timeout {a.ramp_timeout:.0f} s"
                elif any(c.proc.poll() is not None for c in self.clients):
                    why = "a load generator process exited"
                if why:
                    self.stop_reason = f"ramp stopped at {s['connections']:,} connections: {why}"
                    log(self.stop_reason)
                    for c in self.clients:
                        c.command("P")
                    paused = True
                    last_progress = now
                    continue
            if done >= a.connections or (paused and now - last_progress > 3):
                self.t_full = now
                return

    def measure_at_n(self) -> None:
        a = self.args
        time.sleep(a.settle)
        s = self.sample("at_n", pss=True)
        n = s["connections"]
        b = self.base
        m = metrics_or_empty(self.port)
        spread = sorted(int(v) for v in per_worker(m, "fastws_connections_open").values())
        slab_now = slabs()
        slab_all = [(k, v - self.base_slabs.get(k, 0)) for k, v in slab_now.items()]
        slab_delta = sorted(slab_all, key=lambda kv: -kv[1])[:12]
        sock = sockstat()
        ramp_s = self.t_full - self.t_ramp
        rates = self._handshake_rates()
        self.at_n = s
        self.result["at_n"] = {
            "connections": n,
            "opened": s["opened"],
            "failed": s["failed"],
            "lost_while_ramping": s["server_closed"],
            "time_to_n_s": round(ramp_s, 1),
            "handshakes_per_s_mean": round(s["opened"] / ramp_s) if ramp_s else None,
            "handshakes_per_s_peak_5s": rates["peak"],
            "server_rss": s["server_rss"],
            "server_pss": s["server_pss"],
            "server_rss_per_conn": round((s["server_rss"] - b["server_rss"]) / n) if n else None,
            "server_pss_per_conn": round((s["server_pss"] - b["server_pss"]) / n) if n else None,
            "kernel_slab_per_conn": round((s["slab"] - b["slab"]) / n) if n else None,
            "kernel_socket_slab_per_conn": round(
                sum(v for k, v in slab_all if SOCKET_SLABS.match(k)) / n
            )
            if n
            else None,
            "kernel_page_tables_per_conn": round((s["page_tables"] - b["page_tables"]) / n)
            if n
            else None,
            "kernel_tcp_buffers_per_conn": round(
                (sock.get("mem", 0) - self.base_sockstat.get("mem", 0)) * 4096 / n
            )
            if n
            else None,
            "kernel_slab_caches": {k: v for k, v in slab_delta if v > 0},
            "sockstat": sock,
            "machine_used_per_conn": round((b["mem_available"] - s["mem_available"]) / n)
            if n
            else None,
            "client_rss": s["client_rss"],
            "client_rss_per_conn": round(s["client_rss"] / n) if n else None,
            "client_cpu_s_ramp": round(s["client_cpu"], 2),
            "server_cpu_s_ramp": round(s["server_cpu"] - b["server_cpu"], 2),
            "workers": len(spread),
            "per_worker": spread,
            "worker_max_over_mean": round(max(spread) / (sum(spread) / len(spread)), 3)
            if spread and sum(spread)
            else None,
            "worker_min": min(spread) if spread else None,
            "worker_max": max(spread) if spread else None,
            "conntrack_count": sysctl("net.netfilter.nf_conntrack_count"),
        }
        r = self.result["at_n"]
        log(
            f"at N: {n:,} connections in {ramp_s:.0f} s ({r['handshakes_per_s_mean']}/s);"
            f" server {r['server_rss_per_conn']} B RSS / {r['server_pss_per_conn']} B PSS per"
            f" connection; kernel slab {r['kernel_slab_per_conn']} B; workers"
            f" {r['worker_min']}-{r['worker_max']}"
        )

    def _recent_rate(self, seconds: float) -> float | None:
        """Handshakes per second over the last `seconds` of the ramp (None: too early)."""
        ramp = [s for s in self.series if s["phase"] == "ramp"]
        if not ramp or ramp[-1]["t"] - ramp[0]["t"] < 2 * seconds:
            return None
        old = next(s for s in reversed(ramp) if ramp[-1]["t"] - s["t"] >= seconds)
        return (ramp[-1]["opened"] - old["opened"]) / (ramp[-1]["t"] - old["t"])

    def _handshake_rates(self) -> dict[str, int]:
        ramp = [s for s in self.series if s["phase"] == "ramp"]
        peak = 0
        for i in range(len(ramp)):
            j = i
            while j < len(ramp) and ramp[j]["t"] - ramp[i]["t"] < 5:
                j += 1
            if j < len(ramp):
                peak = max(
                    peak,
                    round((ramp[j]["opened"] - ramp[i]["opened"]) / (ramp[j]["t"] - ramp[i]["t"])),
                )
        return {"peak": peak}

    def hold(self) -> None:
        a = self.args
        first = self.sample("hold")
        m0 = metrics_or_empty(self.port)
        client_pids = [c.proc.pid for c in self.clients]
        snap0 = Snapshot(self.server_pids(), client_pids)
        counting = (
            SyscallCount({"server": self.server_pids(), "clients": client_pids})
            if a.count_syscalls
            else None
        )
        self.result["monitoring"] = monitoring(self.port)
        log(f"/metrics and the dashboard at N: {self.result['monitoring']}")
        for c in self.clients:  # the gaps between pings from here on are the hold's
            c.command("G")
        end = time.monotonic() + a.hold
        next_pss = time.monotonic() + a.pss_every
        while time.monotonic() < end and not self.aborted:
            time.sleep(min(a.interval, max(end - time.monotonic(), 0.01)))
            pss = time.monotonic() >= next_pss
            if pss:
                next_pss += a.pss_every
            self.check_memory(self.sample("hold", pss=pss))
        syscalls = counting.stop() if counting else None
        snap1 = Snapshot(self.server_pids(), client_pids)
        for c in self.clients:
            c.command("G")
        last = self.sample("hold", pss=True)
        m1 = metrics_or_empty(self.port)
        seconds = last["t"] - first["t"]
        n = last["connections"]
        pings = last["pings"] - first["pings"]
        cpu = last["server_cpu"] - first["server_cpu"]
        echoes = last["echo_ok"] - first["echo_ok"]
        msgs0 = per_worker(m0, "fastws_messages_in_total")
        msgs1 = per_worker(m1, "fastws_messages_in_total")
        self.result["hold"] = {
            "seconds": round(seconds, 1),
            "connections_at_end": n,
            "connections_lost": last["server_closed"] - first["server_closed"],
            "pings": pings,
            "pings_per_s": round(pings / seconds) if seconds else None,
            "pings_per_conn_per_interval": round(pings / n / (seconds / a.ping_interval), 3)
            if n and seconds
            else None,
            "echoes_per_s": round(echoes / seconds, 1) if seconds else None,
            "server_cpu_cores": round(cpu / seconds, 3) if seconds else None,
            "server_cpu_us_per_ping_incl_echo": round(cpu / pings * 1e6, 1) if pings else None,
            "client_cpu_cores": round((last["client_cpu"] - first["client_cpu"]) / seconds, 3)
            if seconds
            else None,
            "machine_busy_cores": round((last["machine_busy"] - first["machine_busy"]) / seconds, 2)
            if seconds
            else None,
            "workers_with_sample_echoes": sum(
                1 for w, v in msgs1.items() if v - msgs0.get(w, 0) > 0
            ),
            "workers": len(msgs1),
            "server_rss_end": last["server_rss"],
            "server_pss_end": last.get("server_pss"),
            "per_ping": per_ping(snap0, snap1, pings, syscalls),
            "ping_gaps": self._ping_gaps(),
            # The server's side of late pings: its wheels' visits that came more than a tick
            # after they were due (the worker's loop was behind), from /metrics.
            "keepalive_visits": _delta(m0, m1, "fastws_keepalive_visits_total"),
            "keepalive_visits_late": _delta(m0, m1, "fastws_keepalive_visits_late_total"),
        }
        h = self.result["hold"]
        log(
            f"hold {seconds:.0f} s: {h['pings_per_s']} pings/s, server {h['server_cpu_cores']}"
            f" cores, {h['connections_lost']} connections lost"
        )

    def _ping_gaps(self) -> dict[str, Any]:
        """The time between two pings on one connection during the hold, from every
        generator's second "G" answer: how many gaps, how many longer than --ping-within,
        the longest, quantiles (s)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(len(c.gap_phases) < 2 for c in self.clients):
            time.sleep(0.05)
        phases = [c.gap_phases[1] for c in self.clients if len(c.gap_phases) >= 2]
        out: dict[str, Any] = {
            "generators_reporting": len(phases),
            "within_s": self.args.ping_within,
            "gaps": sum(p["n"] for p in phases),
            "over": sum(p["over"] for p in phases),
            "max_s": round(max((p["max"] for p in phases), default=0.0), 3),
        }
        out["quantiles_s"] = histogram_quantiles([x for p in phases for x in p["hist_ns"]], 1e9)
        return out

    def broadcast(self) -> None:
        a = self.args
        if not a.broadcasts:
            return
        for c in self.clients:  # the echo round trips until now: ramp and hold
            c.command("L")
        publisher = Publisher(self.port)
        time.sleep(0.5)
        subscribers = int(total(self.clients, "open"))
        before = self.sample("broadcast")
        cpu0 = before["server_cpu"]
        published: dict[int, float] = {}
        for seq in range(a.broadcasts):
            published[seq] = publisher.publish(seq)
            t_next = published[seq] + 1.0
            while time.monotonic() < t_next:
                time.sleep(min(0.2, max(t_next - time.monotonic(), 0.0)))
                publisher.answer_pings()
            self.check_memory(self.sample("broadcast"))
        expected = subscribers * a.broadcasts
        wait_end, last, last_change = time.monotonic() + a.broadcast_wait, -1, time.monotonic()
        while time.monotonic() < wait_end:
            got = int(total(self.clients, "bcast")) - before["bcast"]
            if got >= expected:
                break
            if got != last:
                last, last_change = got, time.monotonic()
            elif got and time.monotonic() - last_change > 15:  # nothing yet: wait it all
                break
            time.sleep(0.5)
            publisher.answer_pings()
        after = self.sample("broadcast")
        publisher.close()
        self.published = published
        busy = after["machine_busy"] - before["machine_busy"]
        wall = after["t"] - before["t"]
        self.result["broadcast"] = {
            "seconds": round(wall, 1),
            "machine_busy_cores": round(busy / wall, 2) if wall else None,
            "server_cpu_us_per_delivery": round(
                (after["server_cpu"] - cpu0) / (after["bcast"] - before["bcast"]) * 1e6, 1
            )
            if after["bcast"] > before["bcast"]
            else None,
            "client_cpu_us_per_delivery": round(
                (after["client_cpu"] - before["client_cpu"])
                / (after["bcast"] - before["bcast"])
                * 1e6,
                1,
            )
            if after["bcast"] > before["bcast"]
            else None,
            "messages": a.broadcasts,
            "subscribers": subscribers,
            "expected_deliveries": expected,
            "server_cpu_s": round(after["server_cpu"] - cpu0, 2),
        }

    def shutdown(self) -> None:
        """The graceful stop a deployment does, with every connection still open: SIGTERM to
        the master; each worker sends Close 1001 to its clients, waits for their Close and
        closes TCP (RFC 6455 7.1.1), then exits. Timed from the signal to the master's exit;
        the generators answer each Close and wait for the server's FIN, and count the Close
        frames by code and how TCP ended (in `finish_clients`)."""
        a = self.args
        if self.server is None or self.server.poll() is not None:
            return
        before = self.sample("shutdown")
        log_path = self.out / "server.log"
        lines_before = len(log_path.read_bytes().splitlines()) if log_path.exists() else 0
        t = time.monotonic()
        os.kill(self.server.pid, signal.SIGTERM)
        halfway: float | None = None
        limit = a.graceful_timeout + 30  # the master's own bound, and some
        while self.server.poll() is None and time.monotonic() - t < limit:
            time.sleep(0.2)
            left = int(total(self.clients, "open"))
            if halfway is None and left <= before["connections"] / 2:
                halfway = time.monotonic() - t
        exited = self.server.poll() is not None
        seconds = time.monotonic() - t
        time.sleep(a.interval + 0.5)  # the generators' last status lines
        after = self.sample("shutdown")
        server_lines = log_path.read_text(errors="replace").splitlines()[lines_before:]
        self.result["shutdown"] = {
            "connections": before["connections"],
            "graceful_timeout_s": a.graceful_timeout,
            "master_exited": exited,
            "exit_code": self.server.returncode,
            "seconds_to_exit": round(seconds, 2) if exited else None,
            "seconds_to_half_closed": round(halfway, 2) if halfway is not None else None,
            "open_after": after["connections"],
            "client_cpu_s": round(after["client_cpu"] - before["client_cpu"], 2),
            "workers_killed": len(
                {
                    m.group(1)
                    for line in server_lines
                    if (m := re.search(r"worker (\d+) did not stop in time", line))
                }
            ),
            "connections_dropped_at_graceful_timeout": sum(
                int(m.group(1))
                for line in server_lines
                if (m := re.search(r"graceful_timeout reached, dropping (\d+)", line))
            ),
        }
        sd = self.result["shutdown"]
        log(
            f"shutdown: {sd['connections']:,} connections, master exited {exited} after"
            f" {seconds:.1f} s, {sd['workers_killed']} workers killed"
        )

    def finish_clients(self) -> None:
        for c in self.clients:
            c.command("Q")
        for c in self.clients:
            c.finish(timeout=60)
        finals = [c.final for c in self.clients if c.final]
        self.result["clients"] = {
            "processes": len(self.clients),
            "reported": len(finals),
            "opened": sum(f["opened"] for f in finals),
            "failed": sum(f["failed"] for f in finals),
            "server_closed": sum(f["server_closed"] for f in finals),
            "pings": sum(f["pings"] for f in finals),
            "echo_sent": sum(f["echo_sent"] for f in finals),
            "echo_ok": sum(f["echo_ok"] for f in finals),
            "echo_bad": sum(f["echo_bad"] for f in finals),
            "echo_pending": sum(f["echo_pending"] for f in finals),
            "echo_latency_ms": histogram_quantiles(
                [p for f in finals for p in f["echo_ns"]]
                + [p for c in self.clients for h in c.phase_hists for p in h],
                1e6,
            ),
            "echo_latency_ms_before_broadcast": histogram_quantiles(
                [p for c in self.clients for h in c.phase_hists[:1] for p in h], 1e6
            ),
            "echo_latency_ms_from_broadcast": histogram_quantiles(
                [p for f in finals for p in f["echo_ns"]], 1e6
            ),
            "handshake_ms": histogram_quantiles(
                [p for f in finals for p in f["handshake_ns"]], 1e6
            ),
            "bcast_bad": sum(f["bcast_bad"] for f in finals),
            "write_short": sum(f["write_short"] for f in finals),
            "cpu_s": round(sum(f["cpu_user"] + f["cpu_sys"] for f in finals), 2),
            "max_rss_per_process": max((f["maxrss_bytes"] for f in finals), default=0),
            "rss_total": sum(f["rss_bytes"] for f in finals),
            "failure_reasons": _merge_reasons(finals),
            "stderr": [c.stderr.strip()[-300:] for c in self.clients if c.stderr.strip()][:5],
        }
        if "shutdown" in self.result:  # what the generators saw of it
            reasons = self.result["clients"]["failure_reasons"]
            sd = self.result["shutdown"]
            sd["close_codes"] = {
                k.rsplit(" ", 1)[1]: v
                for k, v in reasons.items()
                if k.startswith("the server sent Close ")
            }
            sd["then_tcp_closed_by_server"] = reasons.get("then the server closed TCP", 0)
            sd["then_reset"] = reasons.get("then a read error (reset)", 0)
            sd["without_close"] = reasons.get("EOF from the server", 0) + reasons.get(
                "read error", 0
            )
        if "broadcast" in self.result:
            b = self.result["broadcast"]
            per_seq: dict[int, list[float]] = {}
            for f in finals:
                for seq, count, first, last in f["broadcast"]:
                    e = per_seq.setdefault(seq, [0, math.inf, 0.0])
                    e[0] += count
                    e[1] = min(e[1], first)
                    e[2] = max(e[2], last)
            rows = []
            for seq, t_pub in sorted(self.published.items()):
                count, first, last = per_seq.get(seq, [0, math.inf, 0.0])
                rows.append(
                    {
                        "seq": seq,
                        "deliveries": int(count),
                        "first_ms": round((first - t_pub) * 1e3, 1) if count else None,
                        "last_ms": round((last - t_pub) * 1e3, 1) if count else None,
                    }
                )
            b["per_message"] = rows
            b["deliveries"] = sum(r["deliveries"] for r in rows)
            b["complete"] = b["deliveries"] == b["expected_deliveries"]
            lasts = [r["last_ms"] for r in rows if r["last_ms"] is not None]
            b["publish_to_last_delivery_ms_max"] = max(lasts, default=None)
            b["publish_to_last_delivery_ms_median"] = (
                sorted(lasts)[len(lasts) // 2] if lasts else None
            )
            log(
                f"broadcast: {b['deliveries']:,} of {b['expected_deliveries']:,} deliveries,"
                f" publish to last delivery {b['publish_to_last_delivery_ms_median']} ms (median)"
            )

    def stop_server(self) -> None:
        if self.server is None:
            return
        if self.server.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.server.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.server.wait(30)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.server.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.server.wait(10)
        self.server_log.close()

    def run(self) -> dict[str, Any]:
        a = self.args
        self.t0 = time.monotonic()
        kernel = Kernel(a.connections, not a.no_sysctl, a.ephemeral, a.sources, a.backlog)
        kernel.check()
        self.result["kernel"] = {"before": kernel.before, "notes": kernel.notes}
        self.result["plan"] = {
            k: getattr(a, k)
            for k in (
                "connections", "app", "workers", "client_processes", "sources", "sample", "batch_ms",
                "echo_interval", "echo_size", "hold", "broadcasts", "ping_interval",
                "hs_concurrency", "ephemeral", "min_free_gib", "max_minutes", "worker_timeout",
                "nice",
            )
        }  # fmt: skip
        self.result["machine"] = {
            "cpus": os.cpu_count(),
            "mem_total": meminfo()["MemTotal"],
            "mem_available_at_start": meminfo()["MemAvailable"],
            "kernel": os.uname().release,
            "loadavg_at_start": os.getloadavg(),
        }
        for note in kernel.notes:
            log(note)
        counters0 = kernel_counters()
        watchdog = threading.Timer(a.max_minutes * 60, self._overtime)
        watchdog.daemon = True
        watchdog.start()
        try:
            log(f"server: {a.workers} workers on port {self.port}")
            self.start_server()
            self.baseline()
            log(f"clients: {a.client_processes} processes, {a.sources} source addresses")
            self.start_clients()
            self.ramp()
            if not self.aborted:
                self.measure_at_n()
                self.hold()
            if not self.aborted:
                self.broadcast()
            if not self.aborted:
                self.shutdown()
        except (Exception, KeyboardInterrupt) as exc:  # SIGINT: stop, clean up, report
            self.result["error"] = f"{type(exc).__name__}: {exc}"
            log(self.result["error"])
        finally:
            watchdog.cancel()
            self.finish_clients()
            self.stop_server()
            kernel.restore()
            if a.nice:  # our own session outlives the run: give its weight back
                set_autogroup_nice(os.getpid(), 0)
            self.result["kernel"]["changed"] = kernel.changed
            counters1 = kernel_counters()
            self.result["kernel"]["counters_during_run"] = {
                k: counters1.get(k, 0) - v for k, v in counters0.items()
            }
            self.result["kernel"]["tcp_mem_pages_max"] = max(
                (x["tcp_mem_pages"] for x in self.series), default=0
            )
            self.result["stop_reason"] = self.stop_reason
            self.result["seconds"] = round(time.monotonic() - self.t0, 1)
            log_path = self.out / "server.log"
            log_lines = (
                log_path.read_text(errors="replace").splitlines() if log_path.exists() else []
            )
            self.result["server_log_problems"] = [
                line for line in log_lines if " ERROR " in line or " WARNING " in line
            ][:20]
            self.result["leftover_processes"] = [
                c.proc.pid for c in self.clients if c.proc.poll() is None
            ] + ([self.server.pid] if self.server and self.server.poll() is None else [])
        return self.result

    def _overtime(self) -> None:
        """--max-minutes reached: end everything we started, by PID."""
        log("--max-minutes reached: stopping")
        self.aborted = True
        self.stop_reason = (self.stop_reason or "") + " stopped at --max-minutes"
        for c in self.clients:
            with contextlib.suppress(ProcessLookupError):
                c.proc.kill()
        if self.server is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.server.pid, signal.SIGKILL)


def _merge_reasons(finals: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in finals:
        for k, v in f.get("reasons", {}).items():
            out[k] = out.get(k, 0) + v
    return out


# -- results -----------------------------------------------------------------------------------


def plot(series: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [s for s in series if s["phase"] in ("baseline", "ramp", "at_n")]
    if len(rows) < 2:
        return
    base = rows[0]
    x = [s["connections"] / 1000 for s in rows]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(8, 10), sharex=True)
    ax1.plot(x, [(s["server_rss"] - base["server_rss"]) / GIB for s in rows], label="server RSS")
    pss = [s for s in rows if "server_pss" in s]
    ax1.plot(
        [s["connections"] / 1000 for s in pss],
        [(s["server_pss"] - base["server_pss"]) / GIB for s in pss],
        "o-",
        label="server PSS",
    )
    ax1.plot(x, [(s["slab"] - base["slab"]) / GIB for s in rows], label="kernel slab")
    ax1.plot(x, [s["client_rss"] / GIB for s in rows], label="load generator RSS")
    ax1.set_ylabel("GiB over the idle baseline")
    ax1.legend()
    ax1.grid(alpha=0.3)
    cpu_x, cpu_y, rate = [], [], []
    for a, b in itertools.pairwise(rows):
        if b["t"] > a["t"]:
            cpu_x.append(b["connections"] / 1000)
            cpu_y.append((b["server_cpu"] - a["server_cpu"]) / (b["t"] - a["t"]) * 100)
            rate.append((b["opened"] - a["opened"]) / (b["t"] - a["t"]))
    ax2.plot(cpu_x, cpu_y, label="server CPU (% of one core)")
    ax2.set_ylabel("server CPU %")
    ax2.grid(alpha=0.3)
    ax3.plot(cpu_x, rate)
    ax3.set_ylabel("handshakes/s")
    ax3.set_xlabel("connections open (thousands)")
    ax3.grid(alpha=0.3)
    fig.suptitle("fastws: memory, CPU and handshake rate while ramping")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _lat(c: dict[str, Any], phase: str) -> str:
    q = c.get(f"echo_latency_ms_{phase}", {})
    return f" {q.get('p50')} / {q.get('p99')} / {q.get('max')} ms ({q.get('count', 0):,} echoes)"


def kib(v: float | None) -> str:
    return "n/a" if v is None else f"{v / 1024:.2f} KiB"


def _per_ping_rows(pp: dict[str, Any]) -> list[str]:
    """The hold's per-ping rows (bench.million_pings)."""
    rows = []
    for side, name in (("server", "server"), ("clients", "load generator")):
        d = pp.get(side)
        if not d:
            continue
        calls = (
            f"; syscalls {d['syscalls']} (epoll_wait {d['epoll_waits']}, read {d['reads']},"
            f" write {d['writes']})"
            if "syscalls" in d
            else ""
        )
        rows.append(
            f"| per ping, {name}: CPU user + sys (us), context switches vol. / invol.{calls and ', syscalls'}"
            f" | {d['user_us']} + {d['sys_us']} = {d['cpu_us']}; {d['voluntary_switches']} /"
            f" {d['involuntary_switches']}{calls} |"
        )
    t = pp.get("tcp")
    if t:
        rows.append(
            f"| per ping, TCP (machine-wide): TcpOutSegs, TcpExtTCPHPAcks + TCPPureAcks, TcpExtDelayedACKs |"
            f" {t['OutSegs']}, {t['TCPPureAcks'] + t['TCPHPAcks']}, {t['DelayedACKs']} |"
        )
    m = pp.get("machine")
    if m:
        rows.append(
            "| per ping, whole machine (us): busy; of it interrupts + softirq (charged to no"
            " process: loopback TCP's receive path), steal, the rest beyond both sides (harness,"
            f" kernel threads, others) | {m['busy_us']}; {m['irq_softirq_us']}, {m['steal_us']},"
            f" {m['other_us']} |"
        )
    return rows


def _delta(m0: dict[tuple[str, str], float], m1: dict[tuple[str, str], float], name: str) -> int:
    """A counter's growth between two /metrics reads, summed over the workers."""
    return round(sum(per_worker(m1, name).values()) - sum(per_worker(m0, name).values()))


def _gap_rows(g: dict[str, Any], hold: dict[str, Any] | None = None) -> list[str]:
    if not g.get("gaps"):
        return []
    q = g.get("quantiles_s", {})
    rows = [
        f"| time between two pings on a connection during the hold: gaps, longer than"
        f" {g['within_s']:g} s, longest; p50 / p99 | {g['gaps']:,}, {g['over']:,}, {g['max_s']} s;"
        f" {q.get('p50')} / {q.get('p99')} s |"
    ]
    if hold and hold.get("keepalive_visits"):
        per_ping = hold["keepalive_visits"] / hold["pings"] if hold.get("pings") else None
        rows.append(
            f"| the server's keepalive visits during the hold, per ping; of them more than a tick"
            f" late (the worker's loop behind) | {hold['keepalive_visits']:,},"
            f" {per_ping and round(per_ping, 3)}; {hold['keepalive_visits_late']:,} |"
        )
    return rows


def _monitoring_rows(mo: dict[str, Any]) -> list[str]:
    if not mo:
        return []
    metrics_part = (
        f"/metrics in {mo['metrics_s']} s, {mo['metrics_workers']} workers,"
        f" {mo['metrics_connections_open']:,} open"
        if "metrics_s" in mo
        else f"/metrics failed: {mo.get('metrics_error')}"
    )
    dash = (
        f"dashboard feed open in {mo['dashboard_open_s']} s, 3 snapshots in"
        f" {mo['dashboard_three_snapshots_s']} s ({mo['dashboard_snapshot_bytes']:,} B each,"
        f" {mo['dashboard_workers']} workers, {mo['dashboard_connections_open']:,} open)"
        if "dashboard_open_s" in mo
        else f"dashboard failed: {mo.get('dashboard_error')}"
    )
    return [f"| monitoring at N (start of the hold) | {metrics_part}; {dash} |"]


def _shutdown_rows(sd: dict[str, Any]) -> list[str]:
    if not sd:
        return []
    return [
        f"| graceful stop (SIGTERM, {sd['connections']:,} open): master exited, half the"
        f" connections closed; workers killed, connections dropped at graceful_timeout"
        f" {sd['graceful_timeout_s']:g} s | {sd['seconds_to_exit']} s, {sd['seconds_to_half_closed']}"
        f" s; {sd['workers_killed']}, {sd['connections_dropped_at_graceful_timeout']} |",
        f"| the clients' view: Close frames by code; then TCP closed by the server / reset;"
        f" ended without a Close | {sd.get('close_codes')}; {sd.get('then_tcp_closed_by_server')}"
        f" / {sd.get('then_reset')}; {sd.get('without_close')} |",
    ]


def report_md(r: dict[str, Any], command: str) -> str:
    n = r.get("at_n", {})
    h = r.get("hold", {})
    b = r.get("broadcast", {})
    c = r.get("clients", {})
    base = r.get("baseline", {})
    lines = [
        f"# fastws: {n.get('connections', 0):,} concurrent WebSocket connections",
        "",
        f"`{command}` — started {r['started']}, {r['seconds']} s;"
        f" machine: {r['machine']['cpus']} CPUs, {r['machine']['mem_total'] / GIB:.1f} GiB,"
        f" load average at start {r['machine']['loadavg_at_start'][0]:.1f}.",
        "",
    ]
    if r.get("autogroup_nice"):
        lines += [f"Scheduler autogroup nice (--nice): {r['autogroup_nice']}.", ""]
    if r.get("stop_reason"):
        lines += [f"**Stopped:** {r['stop_reason']}", ""]
    if r.get("error"):
        lines += [f"**Error:** {r['error']}", ""]
    lines += [
        "| measure | value |",
        "| --- | --- |",
        f"| connections open at N (target {r['plan']['connections']:,}) | {n.get('connections', 0):,}"
        f" ({n.get('failed', 0):,} failed, {n.get('lost_while_ramping', 0):,} lost after opening) |",
        f"| workers / load generator processes / source addresses | {n.get('workers')} /"
        f" {c.get('processes')} / {r['plan']['sources']} |",
        f"| time to N, handshakes/s (mean / peak 5 s) | {n.get('time_to_n_s')} s,"
        f" {n.get('handshakes_per_s_mean')} / {n.get('handshakes_per_s_peak_5s')} |",
        f"| server RSS / PSS per connection over the idle baseline | {kib(n.get('server_rss_per_conn'))}"
        f" / {kib(n.get('server_pss_per_conn'))} |",
        f"| server idle baseline (master + workers) | RSS {base.get('server_rss', 0) / 2**20:.0f} MiB,"
        f" PSS {base.get('server_pss', 0) / 2**20:.0f} MiB; one worker"
        f" {base.get('worker_rss_mean', 0) / 2**20:.1f} MiB RSS /"
        f" {base.get('worker_pss_mean', 0) / 2**20:.1f} MiB PSS |",
        f"| server RSS at N | {n.get('server_rss', 0) / GIB:.2f} GiB |",
        f"| kernel slab per connection, both ends (socket caches / all) |"
        f" {kib(n.get('kernel_socket_slab_per_conn'))} / {kib(n.get('kernel_slab_per_conn'))} |",
        f"| kernel TCP buffers per connection (sockstat mem) | {n.get('kernel_tcp_buffers_per_conn')} B |",
        f"| kernel page tables per connection | {n.get('kernel_page_tables_per_conn')} B |",
        f"| machine memory used per connection (MemAvailable: machine-wide, others' work"
        f" included) | {kib(n.get('machine_used_per_conn'))} |",
        f"| load generator RSS per connection | {n.get('client_rss_per_conn')} B |",
        f"| worker spread (min / max, max/mean) | {n.get('worker_min')} / {n.get('worker_max')},"
        f" {n.get('worker_max_over_mean')} |",
        *_monitoring_rows(r.get("monitoring") or {}),
        f"| hold | {h.get('seconds')} s, {h.get('connections_lost')} connections lost |",
        f"| keepalive pings/s, pings per connection per interval | {h.get('pings_per_s')},"
        f" {h.get('pings_per_conn_per_interval')} |",
        *_gap_rows(h.get("ping_gaps") or {}, h),
        f"| server CPU during hold (pings + sample echoes) | {h.get('server_cpu_cores')} cores,"
        f" {h.get('server_cpu_us_per_ping_incl_echo')} us per ping; whole machine busy"
        f" {h.get('machine_busy_cores')} of {r['machine']['cpus']} cores |",
        *_per_ping_rows(h.get("per_ping") or {}),
        f"| sample echoes (ok / bad / pending), workers reached | {c.get('echo_ok')} /"
        f" {c.get('echo_bad')} / {c.get('echo_pending')},"
        f" {h.get('workers_with_sample_echoes')} of {h.get('workers')} |",
        f"| sample echo round trip p50 / p99 / max, ramp + hold |{_lat(c, 'before_broadcast')} |",
        f"| sample echo round trip p50 / p99 / max, during the broadcast |"
        f"{_lat(c, 'from_broadcast')} |",
        f"| broadcast deliveries | {b.get('deliveries', 0):,} of {b.get('expected_deliveries', 0):,}"
        f" ({c.get('bcast_bad', 0)} bad) |",
        f"| publish to last delivery (median / max) | {b.get('publish_to_last_delivery_ms_median')} /"
        f" {b.get('publish_to_last_delivery_ms_max')} ms |",
        f"| CPU per delivery: server / load generator (machine busy during broadcast) |"
        f" {b.get('server_cpu_us_per_delivery')} / {b.get('client_cpu_us_per_delivery')} us"
        f" ({b.get('machine_busy_cores')} cores) |",
        *_shutdown_rows(r.get("shutdown") or {}),
        f"| load generator CPU (whole run) | {c.get('cpu_s')} s |",
        "",
        "Kernel settings (before the run):",
        "",
    ]
    for k, v in r["kernel"]["before"].items():
        lines.append(f"- `{k}` = {v}")
    lines += ["", *[f"- {note}" for note in r["kernel"]["notes"]], ""]
    lines += [
        "Kernel counters during the run (machine-wide: other programs' traffic included): "
        + ", ".join(f"{k} {v:,}" for k, v in r["kernel"].get("counters_during_run", {}).items())
        + f"; TCP memory peak {r['kernel'].get('tcp_mem_pages_max', 0):,} pages"
        f" (tcp_mem: {r['kernel']['before'].get('net.ipv4.tcp_mem')}).",
        "",
    ]
    if r.get("server_log_problems"):
        lines += ["Server log (warnings and errors):", "", "```"]
        lines += [*r["server_log_problems"], "```", ""]
    if c.get("failure_reasons"):
        lines += [
            "How connections ended or failed, by reason (the graceful stop's included): "
            + json.dumps(c["failure_reasons"]),
            "",
        ]
    lines += ["![ramp](ramp.png)", ""]
    return "\n".join(lines)


# -- command line ------------------------------------------------------------------------------


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, default=1_000_000)
    p.add_argument("--app", choices=sorted(APPS), default="listener", help="handler style")
    p.add_argument("--workers", type=int, help="default: max(50, connections / 16,000)")
    p.add_argument("--client-processes", type=int, help="default: connections / 18,000")
    p.add_argument("--sources", type=int, help="127.0.0.x source addresses (from .2)")
    p.add_argument("--ephemeral", action="store_true",
                   help="ephemeral source ports (ip_local_port_range) instead of our own pairs")  # fmt: skip
    p.add_argument("--sample", type=int, default=1000, help="connections echoing, in total")
    p.add_argument("--echo-interval", type=float, default=1.0)
    p.add_argument("--echo-size", type=int, default=64)
    p.add_argument("--hold", type=float, default=300.0, help="seconds at N")
    p.add_argument("--broadcasts", type=int, default=10, help="64 B messages at 1/s")
    p.add_argument("--broadcast-wait", type=float, default=120.0)
    p.add_argument("--ping-interval", type=float, default=30.0)
    p.add_argument("--ping-within", type=float, default=30.0,
                   help="the requirement: every connection answers a ping at least this often"
                   " (s); the generators count the gaps between two pings longer than this")  # fmt: skip
    p.add_argument("--ping-timeout", type=float, default=None,
                   help="the server's ping_timeout (default: fastws' 20 s). A proxy with a shorter"
                   " --ping-interval scales it too: with ping_timeout >= ping_interval the server"
                   " has no look at ping_timeout per ping, which a million at 29 s did have")  # fmt: skip
    p.add_argument("--graceful-timeout", type=float, default=30.0,
                   help="the server's graceful_timeout (fastws' default), for the final stop")  # fmt: skip
    p.add_argument(
        "--hs-concurrency",
        type=int,
        default=384,
        help="handshakes in flight, in total (split over the generator processes)",
    )
    p.add_argument(
        "--rate", type=float, default=0, help="connects/s in total (0: as fast as it goes)"
    )
    p.add_argument("--backlog", type=int, default=2048)
    p.add_argument(
        "--worker-timeout",
        type=float,
        default=300.0,
        help="the server's worker_timeout: 30 s (fastws' default) kills CPU-starved workers",
    )
    p.add_argument("--settle", type=float, default=10.0)
    p.add_argument("--interval", type=float, default=1.0, help="sampling period, s")
    p.add_argument("--pss-every", type=float, default=30.0)
    p.add_argument("--min-free-gib", type=float, default=3.0, help="abort below this MemAvailable")
    p.add_argument("--pause-margin-gib", type=float, default=1.5,
                   help="stop ramping this much above --min-free-gib")  # fmt: skip
    p.add_argument("--ramp-timeout", type=float, default=1200.0)
    p.add_argument(
        "--min-rate", type=float, default=100.0, help="stop ramping below this many handshakes/s"
    )
    p.add_argument("--max-minutes", type=float, default=40.0, help="hard bound of the whole run")
    p.add_argument("--no-sysctl", action="store_true", help="never change kernel settings")
    p.add_argument("--batch-ms", type=float, default=20.0,
                   help="generators: one event-loop pass per this many ms at most, so a process"
                   " is not woken per ping (0: answer at once); the echo sample then has a"
                   " process of its own that answers at once")  # fmt: skip
    p.add_argument("--count-syscalls", action="store_true",
                   help="count each side's system calls during the hold (perf stat)")  # fmt: skip
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        help="nice value for the server's and the generators' scheduler autogroups (root)",
    )
    p.add_argument("--ehash", type=int, default=0,
                   help="run in a network namespace whose TCP established hash has this many"
                   " buckets (root, Linux >= 6.1; 0: the host's, sized at boot)")  # fmt: skip
    p.add_argument("--out", type=Path, help="results folder (default bench/results/million-DATE)")
    p.add_argument("--smoke", action="store_true", help="seconds: 3,000 connections, 4 workers")
    a = p.parse_args(argv)
    if a.smoke:
        a.connections = min(a.connections, 3000)
        a.workers = a.workers or 4
        a.client_processes = a.client_processes or 3
        a.sources = a.sources or 3
        a.sample = min(a.sample, 30)
        a.echo_interval = 0.2
        a.hold, a.broadcasts, a.settle, a.interval = 2.0, 2, 0.5, 0.5
        a.pss_every, a.broadcast_wait, a.max_minutes = 1.0, 20.0, 3.0
        a.ping_interval = 1.0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    per_worker_max = min(PER_WORKER, hard - 200)
    a.workers = a.workers or max(50, math.ceil(a.connections / per_worker_max))
    a.client_processes = a.client_processes or max(
        1, math.ceil(a.connections / min(PER_CLIENT, hard - 100))
    )
    a.sample = min(a.sample, a.connections)
    if a.sources is None:
        if a.ephemeral:
            low, high = map(int, (sysctl("net.ipv4.ip_local_port_range") or "32768 60999").split())
            a.sources = math.ceil(a.connections / (0.8 * (high - low + 1)))
        else:
            a.sources = math.ceil(a.connections / (0.95 * (32_000 - PORT_BASE)))
        a.sources = max(2, a.sources)
    if a.sources > 250:
        p.error("more than 250 source addresses needed: give --sources or fewer connections")
    if a.out is None:
        a.out = ROOT / "bench" / "results" / f"million-{time.strftime('%Y-%m-%d-%H%M%S')}"
    return a


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def in_own_netns(args: argparse.Namespace, argv: list[str]) -> int | None:
    """--ehash N: run this same command again in a new network namespace whose TCP
    established hash has N buckets, and return its exit code; None when this is that run
    (or there is no --ehash). The host's table is sized at boot from memory (262,144 buckets
    on 24 GiB) and here holds both ends' sockets: at a million connections its chains are ~8
    long, and the lookup of every segment walks one (`__inet_lookup_established`, ~10 % of
    the machine's samples while ramping to 1 M). A namespace's own table is the one knob
    that exists at run time (net.ipv4.tcp_child_ehash_entries, Linux >= 6.1, root); on a
    real server, `thash_entries=` on the kernel's command line does the same."""
    if not args.ehash or os.environ.get(NETNS_ENV):
        return None
    knob = "net.ipv4.tcp_child_ehash_entries"
    old = sysctl(knob)
    if os.geteuid() != 0 or old is None or shutil.which("unshare") is None:
        raise SystemExit("--ehash needs root, Linux >= 6.1 (tcp_child_ehash_entries), unshare(1)")
    set_sysctl(knob, str(args.ehash))
    log(f"sysctl {knob} = {args.ehash} (was {old}): the run goes on in a network namespace")
    env = {**os.environ, NETNS_ENV: str(abs(int(sysctl("net.ipv4.tcp_ehash_entries") or 0)))}
    command = [sys.executable, "-m", "bench.million", *argv]
    try:  # (read when the namespace is made, at some point after Popen returns)
        proc = subprocess.Popen(["unshare", "--net", "--", *command], cwd=ROOT, env=env)
        signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signum))
        while True:
            with contextlib.suppress(KeyboardInterrupt):  # the run gets SIGINT too, and reports
                return proc.wait()
    finally:
        set_sysctl(knob, old)
        log(f"sysctl {knob} restored to {old}")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    code = in_own_netns(args, sys.argv[1:] if argv is None else argv)
    if code is not None:
        return code
    if os.environ.get(NETNS_ENV):
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)  # a new namespace's is down
    signal.signal(signal.SIGTERM, _interrupt)  # stop like SIGINT: clean up, report
    command = "python -m bench.million " + " ".join(sys.argv[1:] if argv is None else argv)
    # The server inherits our environment: its FASTWS_* settings belong to the command.
    env = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("FASTWS_"))
    command = f"{env} {command}" if env else command
    run = Run(args)
    result = run.run()
    result["command"] = command
    (args.out / "result.json").write_text(json.dumps({**result, "series": run.series}))
    with contextlib.suppress(Exception):
        plot(run.series, args.out / "ramp.png")
    (args.out / "report.md").write_text(report_md(result, command))
    log(f"results in {args.out}")
    print((args.out / "report.md").read_text())
    n = result.get("at_n", {}).get("connections", 0)
    clean = (
        not result.get("error")
        and not result["leftover_processes"]
        and result.get("clients", {}).get("echo_bad", 1) == 0
        and result.get("clients", {}).get("bcast_bad", 1) == 0
    )
    return 0 if clean and n == args.connections and not run.aborted else 1


if __name__ == "__main__":
    sys.exit(main())
