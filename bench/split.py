"""Where a server's CPU per message goes, process by process: `python -m bench.split`.

For the runs where the server and the load generator share the cores (`--workers 2` on a
2-core machine) the matrix's one figure, messages per server CPU-second, hides why one server
needs more than another. This runs one scenario against each server in alternating rounds,
exactly as `python -m bench run` starts them, and samples every process of the server and of
the load generator from /proc every 50 ms; over the generator's measured window it reports,
per echoed message:

- CPU time, exact (`/proc/PID/schedstat`: the scheduler's ns of execution) and split into
  user and kernel (`utime`/`stime`, 4 ms ticks), time spent runnable but waiting for a cpu;
- context switches, voluntary (the process slept: one per event-loop wake-up) and not
  (preempted), minor page faults, read/write syscalls (`/proc/PID/io`);
- for each server process: its share of the messages' CPU and the connections it holds (its
  TCP sockets on the port, ESTABLISHED, read in the middle of the window): whether
  SO_REUSEPORT spread the connections evenly;
- `--syscalls`: every syscall the server makes, by name, per message (`perf stat` on the
  syscalls' tracepoints, attached for the window; needs perf and root or
  perf_event_paranoid <= 1);
- the machine (`/proc/stat`): user, system, softirq and idle cpu over the window.

    python -m bench.split --servers fastws,picows --scenario b --workers 2 --repeat 3

Writes one JSON file (`--out`, default bench/results/tmp/split-<date>.json) and prints the
table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .procs import CLK_TCK, ServerProcess, cpu_split, descendants, free_port
from .runner import HOST, Options, Runner
from .scenarios import Scenario, scenario
from .servers import SERVERS, ServerSpec

RESULTS = Path(__file__).resolve().parent / "results"
#: the per-process counters sampled, in the order of `_counters`' tuple
FIELDS = ("exec_ns", "wait_ns", "utime", "stime", "vcsw", "nvcsw", "minflt", "syscr", "syscw")


def _counters(pid: int) -> tuple[float, ...] | None:
    """One process's counters (FIELDS), None once it is gone."""
    try:
        sched = Path(f"/proc/{pid}/schedstat").read_text().split()
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
        io = Path(f"/proc/{pid}/io").read_text()
    except OSError:  # gone, or not readable yet (a process in the middle of its exec)
        return None
    found = dict(re.findall(r"^(\w+):\s+(\d+)", status + io, re.M))
    try:
        fields = stat[stat.rindex(")") + 2 :].split()
        return (
            float(sched[0]),
            float(sched[1]),
            int(fields[11]) / CLK_TCK,
            int(fields[12]) / CLK_TCK,
            float(found.get("voluntary_ctxt_switches", 0)),
            float(found.get("nonvoluntary_ctxt_switches", 0)),
            float(fields[7]),
            float(found.get("syscr", 0)),
            float(found.get("syscw", 0)),
        )
    except (ValueError, IndexError):  # a process exiting as it was read: empty files
        return None


def _machine() -> list[float]:
    """/proc/stat's first line: user, nice, system, idle, iowait, irq, softirq (ticks)."""
    return [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]


def _inodes_on_port(port: int) -> set[str]:
    """Socket inodes of ESTABLISHED TCP connections whose local port is `port` (from
    /proc/net/tcp: slow when the machine holds many sockets, e.g. TIME_WAIT ones)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "01" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    found.add(cols[9])
    return found


def connections_by_pid(pids: list[int], port: int) -> dict[int, int]:
    """How many of the port's established connections each process holds a socket of.

    `ss` asks the kernel for the established sockets on the port only (sock_diag filters
    them), which stays cheap beside 100,000 TIME_WAIT sockets; without it, /proc/net/tcp."""
    out = dict.fromkeys(pids, 0)
    ss = shutil.which("ss")
    if ss is not None:
        text = subprocess.run(
            [ss, "-tnpH", "state", "established", f"( sport = :{port} )"],
            capture_output=True, text=True, check=False,
        ).stdout  # fmt: skip
        for line in text.splitlines():
            for pid in {int(p) for p in re.findall(r"pid=(\d+)", line)}:
                if pid in out:
                    out[pid] += 1
        return out
    inodes = _inodes_on_port(port)
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        out[pid] += 1
    return out


class Sampler(threading.Thread):
    """Every `period` s: (time, {pid: counters}) for the trees under `roots`, and the
    machine's /proc/stat."""

    def __init__(self, roots: list[int], period: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.roots = roots
        self.period = period
        self.samples: list[tuple[float, dict[int, tuple[float, ...]], list[float]]] = []
        self.stopped = threading.Event()

    def sample(self) -> None:
        now = time.monotonic()
        found = {}
        # /proc of a process exiting as it is read can be empty: that sample is skipped
        with contextlib.suppress(OSError, ValueError, IndexError):
            for root in self.roots:
                for pid in descendants(root):
                    if (c := _counters(pid)) is not None:
                        found[pid] = c
            self.samples.append((now, found, _machine()))

    def run(self) -> None:
        while not self.stopped.wait(self.period):
            self.sample()

    def stop(self) -> None:
        self.stopped.set()
        self.join()
        self.sample()

    def delta(self, start: float, end: float) -> tuple[dict[int, list[float]], list[float]]:
        """Each process's counters, and the machine's, between `start` and `end`
        (interpolated between the samples around each end; a process must appear in both)."""

        last: dict[int, tuple[float, ...]] = {}  # a process's last sample (it may exit)
        for _, procs, _ in self.samples:
            last.update(procs)

        def at(t: float) -> tuple[dict[int, list[float]], list[float]]:
            before = max((s for s in self.samples if s[0] <= t), key=lambda s: s[0])
            after = min((s for s in self.samples if s[0] >= t), key=lambda s: s[0])
            w = (t - before[0]) / (after[0] - before[0]) if after[0] > before[0] else 0.0
            procs = {
                # gone by `after` (the generator's processes exit at the window's end): the
                # last sample it had, at most one period short
                pid: [
                    a + (b - a) * w
                    for a, b in zip(values, after[1].get(pid, last[pid]), strict=True)
                ]
                for pid, values in before[1].items()
            }
            machine = [a + (b - a) * w for a, b in zip(before[2], after[2], strict=True)]
            return procs, machine

        p0, m0 = at(start)
        p1, m1 = at(end)
        procs = {
            pid: [b - a for a, b in zip(p0[pid], p1[pid], strict=True)]
            for pid in p0.keys() & p1.keys()
        }
        return procs, [b - a for a, b in zip(m0, m1, strict=True)]


def _syscall_argv(pids: list[int], seconds: float, out: Path) -> list[str] | None:
    perf = shutil.which("perf")
    if perf is None:
        return None
    return [
        perf, "stat", "-x", ",", "-o", str(out), "-e", "syscalls:sys_enter_*", "-e",
        "sched:sched_wakeup", "-p", ",".join(map(str, pids)), "--", "sleep", f"{seconds:.3f}",
    ]  # fmt: skip


def _read_perf_stat(path: Path) -> dict[str, float]:
    counts: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            cols = line.split(",")
            if len(cols) > 2 and cols[0].replace(".", "").isdigit():
                name = cols[2].removeprefix("syscalls:sys_enter_")
                if float(cols[0]):
                    counts[name] = float(cols[0])
    return counts


def run_one(
    runner: Runner, spec: ServerSpec, scn: Scenario, rep: int, syscalls: bool, workdir: Path
) -> dict[str, Any]:
    """One run of `scn` against a fresh `spec`, sampled; its record."""
    opt = runner.opt
    port = free_port(HOST)
    argv = spec.argv(HOST, port, runner.bins, scn.deflate, opt.workers)
    server = ServerProcess(
        argv, HOST, port, opt.server_cpus, workdir / f"{scn.key}-{spec.name}-{rep}.log"
    )
    rec: dict[str, Any] = {"server": spec.name, "scenario": scn.key, "repeat": rep}
    try:
        server.wait_listening()
        runner._loadgen(spec, port, conns=1, depth=1, size=64, text=scn.text, warmup=0.0,
                        duration=0.2, procs=1)  # fmt: skip
        time.sleep(0.3)  # a master's workers have all started
        lg_argv = runner._loadgen_argv(
            spec, port, conns=scn.conns, depth=scn.depth, size=scn.size, text=scn.text,
            deflate=scn.deflate, shape=scn.shape, warmup=opt.warmup, duration=opt.duration,
            procs=max(1, min(opt.client_procs, scn.conns)),
        )  # fmt: skip
        lg = runner._spawn(lg_argv, stderr=subprocess.PIPE)
        sampler = Sampler([server.pid, lg.pid])
        sampler.sample()
        sampler.start()
        server_pids = server.tree()
        perf: subprocess.Popen[bytes] | None = None
        stat_out = workdir / f"{scn.key}-{spec.name}-{rep}.perfstat"
        time.sleep(opt.warmup + 0.2)
        if syscalls and (cmd := _syscall_argv(server_pids, opt.duration - 0.6, stat_out)):
            perf = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(max(0.0, opt.duration / 2 - 0.2))
        conns = connections_by_pid(server_pids, port)
        out, err = lg.communicate(timeout=opt.warmup + opt.duration + 90)
        sampler.stop()
        if perf is not None:
            perf.wait(30)
        result = json.loads(out.strip().splitlines()[-1])
        if result.get("errors") or not result.get("verified"):
            raise RuntimeError(f"load generator: {result.get('error') or err.strip()}")
        start, end = result["window"]
        procs, machine = sampler.delta(start, end)
        msgs = result["msgs_per_s"] * (end - start)
        rec.update(ok=True, msgs=msgs, seconds=end - start, msgs_per_s=result["msgs_per_s"],
                   p50_us=result["latency_us"].get("p50"), p99_us=result["latency_us"].get("p99"),
                   client_cpu=result["client_cpu"])  # fmt: skip
        rec["server"] = spec.name
        rec["processes"] = {
            str(pid): {
                "role": "server" if pid in server_pids else "loadgen",
                "connections": conns.get(pid),
                **dict(zip(FIELDS, values, strict=True)),
            }
            for pid, values in procs.items()
        }
        rec["machine_ticks"] = dict(
            zip(
                ("user", "nice", "system", "idle", "iowait", "irq", "softirq"), machine, strict=True
            )
        )
        if perf is not None:
            counts = _read_perf_stat(stat_out)
            window = opt.duration - 0.6
            rec["syscalls_per_msg"] = {
                k: v / (result["msgs_per_s"] * window) for k, v in sorted(counts.items())
            }
    except Exception as exc:  # reported, the rounds go on
        rec.update(ok=False, error=f"{type(exc).__name__}: {exc}", output=server.output())
    finally:
        server.stop()
    return rec


def per_message(rec: dict[str, Any], role: str) -> dict[str, float]:
    """Per echoed message: the role's processes summed (µs for times, counts otherwise)."""
    rows = [p for p in rec["processes"].values() if p["role"] == role]
    msgs = rec["msgs"]
    total = {f: sum(p[f] for p in rows) for f in FIELDS}
    out = {
        "cpu_us": total["exec_ns"] / msgs / 1e3,
        "user_share": total["utime"] / (total["utime"] + total["stime"] or 1),
        "wait_us": total["wait_ns"] / msgs / 1e3,
        "vcsw": total["vcsw"] / msgs,
        "nvcsw": total["nvcsw"] / msgs,
        "minflt": total["minflt"] / msgs,
        "syscr": total["syscr"] / msgs,
        "syscw": total["syscw"] / msgs,
        "cpu_s_per_s": total["exec_ns"] / 1e9 / rec["seconds"],
    }
    return out


def table(records: list[dict[str, Any]]) -> str:
    """Medians per server: per message, server and generator; spread over the workers."""
    by: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        if rec.get("ok"):
            by.setdefault(rec["server"], []).append(rec)
    lines = [
        "| server | msgs/s | msgs per server CPU-s | server µs/msg (user %) | wait µs/msg |"
        " vol. / invol. switches per 1k msgs | minflt per 1k | read / write syscalls per msg |"
        " generator µs/msg (its rusage) | workers: connections, CPU share | p50 / p99 µs |",
        "|" + " --- |" * 10,
    ]
    for name, recs in by.items():
        srv = [per_message(r, "server") for r in recs]

        def med(rows: list[dict[str, float]], key: str) -> float:
            return statistics.median(r[key] for r in rows)

        spread = []
        for r in recs:
            workers = [p for p in r["processes"].values() if p["role"] == "server"]
            busy = sum(p["exec_ns"] for p in workers) or 1
            spread.append(
                " / ".join(
                    f"{p['connections']}, {p['exec_ns'] / busy:.0%}"
                    for p in sorted(workers, key=lambda p: -p["exec_ns"])
                    if p["exec_ns"] > 0.01 * busy
                )
            )
        lines.append(
            f"| {name} | {statistics.median(r['msgs_per_s'] for r in recs):,.0f} "
            f"| {1e6 / med(srv, 'cpu_us'):,.0f} "
            f"| {med(srv, 'cpu_us'):.2f} ({med(srv, 'user_share'):.0%}) "
            f"| {med(srv, 'wait_us'):.2f} "
            f"| {med(srv, 'vcsw') * 1e3:.0f} / {med(srv, 'nvcsw') * 1e3:.0f} "
            f"| {med(srv, 'minflt') * 1e3:.1f} "
            f"| {med(srv, 'syscr'):.2f} / {med(srv, 'syscw'):.2f} "
            f"| {statistics.median(r.get('client_cpu', 0) / r['msgs_per_s'] * 1e6 for r in recs):.2f} "
            f"| {'; '.join(spread)} "
            f"| {statistics.median(r['p50_us'] for r in recs):.0f} / "
            f"{statistics.median(r['p99_us'] for r in recs):.0f} |"
        )
    calls: dict[str, dict[str, list[float]]] = {}
    for rec in records:
        for k, v in rec.get("syscalls_per_msg", {}).items():
            calls.setdefault(k, {}).setdefault(rec["server"], []).append(v)
    if calls:
        names = list(by)
        lines += ["", "| syscall per message | " + " | ".join(names) + " |"]
        lines.append("|" + " --- |" * (len(names) + 1))
        for k in sorted(calls, key=lambda k: -max(statistics.median(v) for v in calls[k].values())):
            cells = [calls[k].get(n) for n in names]
            if max((statistics.median(c) for c in cells if c), default=0) < 0.005:
                continue
            lines.append(
                f"| {k} | "
                + " | ".join(f"{statistics.median(c):.3f}" if c else "-" for c in cells)
                + " |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="fastws,picows")
    parser.add_argument("--scenario", default="b")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--syscalls", action="store_true", help="count syscalls with perf stat")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--report", type=Path, default=None, help="print a saved run's table")
    args = parser.parse_args(argv)
    if args.report is not None:
        saved = json.loads(args.report.read_text())
        print(f"{saved['meta']['command']}\nload average {saved['meta']['loadavg']}\n")
        print(table(saved["runs"]))
        return 0
    scn = scenario(args.scenario)
    specs = [SERVERS[s] for s in args.servers.split(",")]
    server_cpus, client_cpus = cpu_split()
    if args.workers > 1:  # as `bench run --workers N`: everything shares every cpu
        server_cpus = client_cpus = server_cpus | client_cpus
    opts = Options(
        duration=args.duration, warmup=args.warmup, workers=args.workers,
        server_cpus=server_cpus, client_cpus=client_cpus,
    )  # fmt: skip
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d-%H%M%S")
    out: Path = args.out or RESULTS / "tmp" / f"split-{stamp}.json"
    workdir = out.parent / f"{out.stem}-logs"
    workdir.mkdir(parents=True, exist_ok=True)
    runner = Runner(specs, [scn], opts, workdir)
    affinity = os.sched_getaffinity(0)
    with contextlib.suppress(OSError):  # the harness off the server's core, as `bench run`
        os.sched_setaffinity(0, opts.client_cpus)
    records = []
    load = [os.getloadavg()[0]]
    try:
        for rep in range(args.repeat):
            for spec in specs:
                rec = run_one(runner, spec, scn, rep, args.syscalls, workdir)
                records.append(rec)
                print(
                    f"[{scn.key}] {spec.name} #{rep}: "
                    + (
                        f"{rec['msgs_per_s']:,.0f} msgs/s, server "
                        f"{per_message(rec, 'server')['cpu_us']:.2f} µs/msg"
                        if rec["ok"]
                        else f"FAILED {rec['error']}"
                    ),
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, affinity)
    load.append(os.getloadavg()[0])
    meta = {
        "date": stamp,
        "command": "python -m bench.split " + " ".join(sys.argv[1:] if argv is None else argv),
        "loadavg": load,
    }
    out.write_text(json.dumps({"meta": meta, "runs": records}, indent=1))
    print(f"{meta['command']}\nload average {load[0]:.2f} -> {load[1]:.2f}\n")
    print(table(records))
    print(f"\nwritten to {out}")
    return 0 if all(r.get("ok") for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
