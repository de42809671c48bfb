"""Run a locust load test against fastws (or a peer, or any URL) and write a report.

    python loadtests/run.py --server fastws --server websockets \
        --steps 500,1000,2000,4000 --step-hold 20 --processes 2 --name scaling

For each `--server` in turn: start it (`fastws serve`, with `--workers N` passed through, or
the `websockets` library's echo server from loadtests/servers/), or target a ws:// URL as it
is; run locust headless with the locustfile (and the stepped shape when `--steps` is given),
distributed over `--processes` local locust processes and 127.0.0.x source addresses; sample
every second the RSS and CPU of the server's and locust's process trees, the server's
established connections (from /proc/net/tcp) and its `/metrics` when it has them. Then write,
under loadtests/results/NAME/: locust's CSVs, `samples-SERVER.csv`, `timeline-SERVER.csv`
(one row per second), `steps.csv` (one row per step and server), `scaling.png` and
`report.md`. Linux only (it reads /proc). See loadtests/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import re
import resource
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
#: The latency bound of "connections held": p99 of the measured request under this.
P99_BOUND_MS = 100.0


# -- processes ----------------------------------------------------------------------------------


def raise_fd_limit() -> None:
    """Soft open-file limit up to the hard one (in the children: server and locust)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def tree_usage(root: int | None) -> tuple[int, int, dict[int, float]]:
    """(RSS bytes, PSS bytes, {pid: CPU seconds}) over `root` and its descendants.

    RSS counts pages shared by forked workers once per process; PSS splits them, so the sum
    is the tree's real footprint. CPU is kept per process: a process leaving the tree must
    not make the tree's CPU time go backwards.
    """
    if root is None:
        return 0, 0, {}
    rss = pss = 0
    cpu: dict[int, float] = {}
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After "pid (comm)": fields[11], [12] are utime, stime; [21] is rss in pages.
        cpu[pid] = (int(fields[11]) + int(fields[12])) / TICKS
        rss += int(fields[21]) * PAGE
        with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
                    break
    return rss, pss, cpu


def cpu_percent(before: dict[int, float], after: dict[int, float], seconds: float) -> float:
    """CPU used between two samples, in % of one core (new processes count from zero)."""
    used = sum(t - before.get(pid, 0.0) for pid, t in after.items())
    return 100 * max(0.0, used) / seconds if seconds > 0 else 0.0


def established(port: int) -> int:
    """Server-side TCP connections in ESTABLISHED state on local `port` (IPv4 and IPv6)."""
    hex_port = f":{port:04X}"
    count = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(name) as f:
            next(f)
            for line in f:
                parts = line.split(None, 4)
                if parts[3] == "01" and parts[1].endswith(hex_port):
                    count += 1
    return count


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_listening(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"server not listening on {host}:{port} after {timeout} s")
        time.sleep(0.05)


def stop_process(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process (its group holds its workers), then SIGKILL the group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def fastws_supports(flag: str) -> bool:
    out = subprocess.run(
        [sys.executable, "-m", "fastws", "serve", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    ).stdout
    return flag in out


# -- sampling -----------------------------------------------------------------------------------


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format (or a flat JSON object) to {name: value}; labels kept in names."""
    text = text.strip()
    if text.startswith("{"):
        data = json.loads(text)
        return {k: float(v) for k, v in data.items() if isinstance(v, int | float)}
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            values[name.strip()] = float(value)
    return values


@dataclass
class Sampler:
    """Samples the server and locust every `interval` seconds in a thread."""

    server_pid: int | None
    port: int | None
    metrics_url: str | None
    interval: float
    locust_pid: int | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def sample(self) -> dict[str, Any]:
        row: dict[str, Any] = {"time": time.time()}
        for who, pid in (("server", self.server_pid), ("locust", self.locust_pid)):
            rss, pss, cpu = tree_usage(pid)
            row[f"{who}_rss"], row[f"{who}_pss"], row[f"{who}_cpu_s"] = rss, pss, cpu
        if self.rows:
            seconds = row["time"] - self.rows[-1]["time"]
            for who in ("server", "locust"):
                before = self.rows[-1][f"{who}_cpu_s"]
                row[f"{who}_cpu"] = cpu_percent(before, row[f"{who}_cpu_s"], seconds)
        else:
            row["server_cpu"] = row["locust_cpu"] = 0.0
        row["connections"] = established(self.port) if self.port else ""
        row["load1"] = os.getloadavg()[0]
        if self.metrics_url:
            try:
                with urllib.request.urlopen(self.metrics_url, timeout=self.interval) as resp:
                    for name, value in parse_metrics(resp.read().decode()).items():
                        row[f"metrics:{name}"] = value
            except (OSError, ValueError):
                pass
        return row

    def _run(self) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            self.rows.append(self.sample())
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - start)))


def metrics_url_for(host: str, port: int) -> str | None:
    """The server's /metrics URL if it answers 200 there (after the pre-fork work lands)."""
    url = f"http://{host}:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return url if resp.status == 200 else None
    except (OSError, ValueError):
        return None


# -- one run ------------------------------------------------------------------------------------


@dataclass
class Run:
    label: str
    url: str
    command: list[str]
    server_cmd: list[str] | None
    csv_prefix: Path
    step_log: Path | None
    samples: list[dict[str, Any]]
    baseline_rss: int
    exit_code: int
    started: float
    ended: float


def server_command(kind: str, host: str, port: int, args: argparse.Namespace) -> list[str]:
    if kind == "fastws":
        cmd = [sys.executable, "-m", "fastws", "serve", "--host", host, "--port", str(port)]
        cmd += ["--log-level", "warning"]
        if args.workers is not None:
            if fastws_supports("--workers"):
                cmd += ["--workers", str(args.workers)]
            elif args.workers > 1:
                raise SystemExit("this fastws has no --workers yet; run without --workers")
        return cmd + shlex.split(args.server_args)
    if kind == "websockets":
        script = HERE / "servers" / "websockets_echo.py"
        cmd = [sys.executable, str(script), "--host", host, "--port", str(port)]
        return [*cmd, "--loop", args.peer_loop]
    raise ValueError(kind)


def locust_command(
    url: str, prefix: Path, step_log: Path | None, args: argparse.Namespace
) -> list[str]:
    files = [str(HERE / args.locustfile)]
    if args.steps:
        files.append(str(HERE / "shape.py"))
    cmd = [sys.executable, "-m", "locust", "-f", ",".join(files), "--host", url]
    cmd += ["--headless", "--only-summary", "--csv", str(prefix), "--csv-full-history"]
    cmd += ["--stop-timeout", "5", "--exit-code-on-error", "0"]
    if args.processes > 1:
        cmd += ["--processes", str(args.processes)]
    if args.steps:
        cmd += ["--steps", args.steps, "--step-hold", str(args.step_hold)]
        cmd += ["--step-rate", str(args.step_rate), "--step-log", str(step_log)]
        cmd += ["--step-connect-timeout", str(args.step_connect_timeout)]
    else:
        cmd += ["-u", str(args.users), "-r", str(args.spawn_rate), "-t", args.run_time]
    return cmd + shlex.split(args.locust_args)


def run_one(target: str, args: argparse.Namespace, out: Path) -> Run:
    host = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None
    server_cmd: list[str] | None = None
    if target in ("fastws", "websockets"):
        label = target
        port = free_port(host)
        server_cmd = server_command(target, host, port, args)
        url = f"ws://{host}:{port}/"
        log = open(out / f"server-{label}.log", "wb")  # noqa: SIM115 - lives with the server
        proc = subprocess.Popen(
            server_cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT,
            start_new_session=True,
            preexec_fn=raise_fd_limit,
        )
        wait_listening(host, port, proc, 20)
        print(f"[{label}] server listening: {shlex.join(server_cmd)}", flush=True)
    else:
        url = target
        parts = urlsplit(url)
        label = re.sub(r"[^A-Za-z0-9.-]+", "_", parts.netloc)
        port = parts.port or 80
        host = parts.hostname or host
    try:
        metrics = metrics_url_for(host, port) if proc is not None else None
        sampler = Sampler(proc.pid if proc else None, port, metrics, args.sample_interval)
        time.sleep(1.0)
        baseline_rss = sampler.sample()["server_rss"]
        prefix = out / f"locust-{label}"
        step_log = out / f"steps-{label}.jsonl" if args.steps else None
        if step_log is not None:
            step_log.unlink(missing_ok=True)
        cmd = locust_command(url, prefix, step_log, args)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])]
        )
        if args.source_addresses:
            env["FASTWS_LOCUST_SOURCE_ADDRESSES"] = args.source_addresses
        print(f"[{label}] $ {shlex.join(cmd)}", flush=True)
        started = time.time()
        with open(out / f"locust-{label}.log", "wb") as locust_log:
            locust = subprocess.Popen(
                cmd,
                stdout=locust_log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=out,
                env=env,
                start_new_session=True,
                preexec_fn=raise_fd_limit,
            )
            sampler.locust_pid = locust.pid
            sampler.start()
            try:
                exit_code = locust.wait(args.timeout)
            except subprocess.TimeoutExpired:
                print(f"[{label}] locust still running after {args.timeout} s: stopping it")
                exit_code = -1
            finally:
                stop_process(locust, grace=15)
                sampler.stop()
        ended = time.time()
        print(f"[{label}] locust finished in {ended - started:.1f} s", flush=True)
    finally:
        if proc is not None:
            stop_process(proc)
            print(f"[{label}] server stopped", flush=True)
    return Run(
        label,
        url,
        cmd,
        server_cmd,
        prefix,
        step_log,
        sampler.rows,
        baseline_rss,
        exit_code,
        started,
        ended,
    )


# -- analysis -----------------------------------------------------------------------------------


def _number(row: dict[str, str], key: str) -> float | None:
    try:
        return float(row.get(key, ""))
    except ValueError:
        return None  # "N/A" before the first request


def read_history(run: Run, name: str) -> list[dict[str, Any]]:
    """Locust's per-second rows for request `name` (current 10 s window percentiles)."""
    rows = []
    path = Path(f"{run.csv_prefix}_stats_history.csv")
    if not path.exists():
        return rows
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["Name"] != name:
                continue

            rows.append(
                {
                    "time": int(row["Timestamp"]),
                    "users": int(row["User Count"]),
                    "rps": _number(row, "Requests/s"),
                    "p50": _number(row, "50%"),
                    "p99": _number(row, "99%"),
                    "requests": int(row["Total Request Count"]),
                    "failures": int(row["Total Failure Count"]),
                }
            )
    return rows


def timeline(run: Run, name: str) -> list[dict[str, Any]]:
    """One row per second: locust's numbers for `name` beside the nearest sample."""
    history = read_history(run, name)
    aggregated = {r["time"]: r for r in read_history(run, "Aggregated")}
    samples = run.samples
    out = []
    for row in history:
        sample = min(samples, key=lambda s: abs(s["time"] - row["time"])) if samples else {}
        merged = dict(row)
        total = aggregated.get(row["time"])
        merged["all_failures"] = total["failures"] if total else ""
        merged["server_rss"] = sample.get("server_rss", "")
        merged["locust_rss"] = sample.get("locust_rss", "")
        merged["connections"] = sample.get("connections", "")
        merged["load1"] = sample.get("load1", "")
        merged["server_pss"] = sample.get("server_pss", "")
        merged["server_cpu"] = sample.get("server_cpu", "")
        merged["locust_cpu"] = sample.get("locust_cpu", "")
        merged["metrics_connections"] = sample.get("metrics:fastws_connections_open", "")
        out.append(merged)
    return out


def step_windows(run: Run, rows: list[dict[str, Any]]) -> list[tuple[int, float, float]]:
    """(users, start, end) of each held step: from the shape's log, else each plateau of
    the user count in the timeline (the first 10 s of a plateau skipped: locust's window)."""
    windows: list[tuple[int, float, float]] = []
    if run.step_log is not None and run.step_log.exists():
        holds: dict[int, float] = {}
        for line in run.step_log.read_text().splitlines():
            event = json.loads(line)
            if event["event"] == "hold":
                holds[event["step"]] = event["time"]
            elif event["event"] == "end" and event["step"] in holds:
                windows.append((event["users"], holds[event["step"]], event["time"]))
        return windows
    start = None
    users = None
    for row in [*rows, {"users": None, "time": float("inf")}]:
        if row["users"] != users:
            if users and start is not None and row["time"] - start > 10:
                windows.append((users, start + 10, min(row["time"], run.ended)))
            users, start = row["users"], row["time"]
    return windows


def summarize(run: Run, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    steps = []
    for users, start, end in step_windows(run, rows):
        inside = [r for r in rows if start <= r["time"] <= end]
        if not inside and rows:
            inside = [min(rows, key=lambda r: abs(r["time"] - end))]
        samples = [s for s in run.samples if start <= s["time"] <= end]
        if not samples and run.samples:
            # A short hold on a busy machine may fall between two samples: take the nearest.
            samples = [min(run.samples, key=lambda s: abs(s["time"] - end))]
        if not inside:
            continue
        last = inside[-1]  # its percentiles cover the last 10 s of the hold
        conns = [s["connections"] for s in samples if s["connections"] != ""]
        rss = [s["server_rss"] for s in samples]
        connections = int(statistics.median(conns)) if conns else None
        server_rss = int(statistics.median(rss)) if rss else None
        per_conn = None
        if connections and server_rss is not None:
            per_conn = (server_rss - run.baseline_rss) / connections
        pss = [s["server_pss"] for s in samples]
        cpu = statistics.mean(s["server_cpu"] for s in samples) if samples else None
        locust_cpu = statistics.mean(s["locust_cpu"] for s in samples) if samples else None
        steps.append(
            {
                "server": run.label,
                "users": users,
                "connections": connections,
                "rps": round(statistics.mean(r["rps"] or 0 for r in inside), 1),
                "p50_ms": last["p50"],
                "p99_ms": last["p99"],
                # Every request type (connects included), during the hold.
                "failures": int(inside[-1]["all_failures"] or 0)
                - int(inside[0]["all_failures"] or 0),
                "server_rss_mib": None if server_rss is None else round(server_rss / 2**20, 1),
                "rss_per_conn_kib": None if per_conn is None else round(per_conn / 1024, 1),
                "server_pss_mib": round(statistics.median(pss) / 2**20, 1) if pss else None,
                "server_cpu_pct": None if cpu is None else round(cpu, 1),
                "locust_cpu_pct": None if locust_cpu is None else round(locust_cpu, 1),
                "load1": round(statistics.mean(s["load1"] for s in samples), 2)
                if samples
                else None,
            }
        )
    return steps


def held(steps: list[dict[str, Any]]) -> int:
    """The most users held with p99 under the bound, and every step below it too."""
    best = 0
    for step in sorted(steps, key=lambda s: s["users"]):
        if step["p99_ms"] is None or step["p99_ms"] >= P99_BOUND_MS or step["failures"]:
            break
        best = step["users"]
    return best


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        for row in rows:
            # Per-process CPU seconds are written as the tree's total.
            writer.writerow(
                {k: sum(v.values()) if isinstance(v, dict) else v for k, v in row.items()}
            )


def plot(
    path: Path,
    timelines: dict[str, list[dict[str, Any]]],
    steps: list[dict[str, Any]],
    name: str,
) -> bool:
    """Four panels, one colour per server: per-second points, held steps as lines."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install 'fastws[loadtest]')")
        return False
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    (lat, mem), (cpu, fail) = axes
    users_ax = fail.twinx()
    users_ax.set_ylabel("connections (dotted)")
    for index, (label, rows) in enumerate(timelines.items()):
        color = f"C{index}"
        rows = [r for r in rows if r["connections"] not in ("", 0)]
        conns = [r["connections"] for r in rows]
        held_steps = sorted(
            (s for s in steps if s["server"] == label and s["connections"]),
            key=lambda s: s["connections"],
        )
        x = [s["connections"] for s in held_steps]
        lat.scatter(conns, [r["p99"] for r in rows], s=6, color=color, alpha=0.25)
        lat.plot(x, [s["p99_ms"] for s in held_steps], "o-", color=color, label=f"{label} p99")
        lat.plot(x, [s["p50_ms"] for s in held_steps], "s--", color=color, label=f"{label} p50")
        mem.scatter(conns, [r["server_rss"] / 2**20 for r in rows], s=6, color=color, alpha=0.25)
        mem.plot(
            x, [s["server_rss_mib"] for s in held_steps], "o-", color=color, label=f"{label} RSS"
        )
        mem.plot(
            x, [s["server_pss_mib"] for s in held_steps], "s--", color=color, label=f"{label} PSS"
        )
        cpu.scatter(conns, [r["server_cpu"] or 0 for r in rows], s=6, color=color, alpha=0.25)
        cpu.plot(
            x, [s["server_cpu_pct"] for s in held_steps], "o-", color=color, label=f"{label} server"
        )
        cpu.plot(
            x, [s["locust_cpu_pct"] for s in held_steps], "x:", color=color, label=f"{label} locust"
        )
        t0 = rows[0]["time"] if rows else 0
        times = [r["time"] - t0 for r in rows]
        fail.plot(
            times, [r["all_failures"] or 0 for r in rows], color=color, label=f"{label} failures"
        )
        users_ax.plot(times, conns, color=color, alpha=0.4, linestyle=":")
    lat.axhline(P99_BOUND_MS, color="grey", linestyle="--", linewidth=0.8)
    lat.set(xlabel="connections", ylabel=f"{name} round trip (ms)", yscale="log", title="Latency")
    mem.set(xlabel="connections", ylabel="server memory (MiB)", title="Memory")
    cpu.set(xlabel="connections", ylabel="CPU (% of one core)", title="CPU")
    fail.set(xlabel="seconds", ylabel="failures (cumulative)", title="Failures and connections")
    for ax in (lat, mem, cpu, fail):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def fmt(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def report(
    out: Path, runs: list[Run], steps: list[dict[str, Any]], plotted: bool, args: argparse.Namespace
) -> str:
    lines = [f"# Load test: {out.name}", ""]
    lines += [f"Command: `python {shlex.join(sys.argv)}`", ""]
    lines += [
        f"Machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}, "
        f"Python {platform.python_version()}. Load average during the run is in the table "
        "(`load1`): a shared machine's numbers are noisy; compare servers only within one run.",
        "",
        f"Locustfile `{args.locustfile}`, measured request `{args.name_to_measure}`, "
        f"{args.processes} locust process(es), source addresses "
        f"`{args.source_addresses or 'default'}`. Latencies are locust's percentiles over the "
        "last 10 s of each held step; RSS per connection = (server RSS - idle RSS) / "
        "established connections.",
        "",
    ]
    for run in runs:
        lines.append(
            f"- **{run.label}**: `{shlex.join(run.server_cmd) if run.server_cmd else run.url}`"
            f" (locust exit code {run.exit_code}, idle RSS "
            f"{run.baseline_rss / 2**20:.1f} MiB)"
        )
    lines.append("")
    head = [
        "server",
        "users",
        "connections",
        "rps",
        "p50_ms",
        "p99_ms",
        "failures",
        "server_rss_mib",
        "server_pss_mib",
        "rss_per_conn_kib",
        "server_cpu_pct",
        "locust_cpu_pct",
        "load1",
    ]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for step in steps:
        lines.append("| " + " | ".join(fmt(step.get(k)) for k in head) + " |")
    lines.append("")
    best = {run.label: held([s for s in steps if s["server"] == run.label]) for run in runs}
    for label, users in best.items():
        lines.append(
            f"- {label}: held **{users}** users with p99 < {P99_BOUND_MS:.0f} ms and no failures "
            "(at every step up to there)."
        )
    if len(best) == 2:
        (a, ua), (b, ub) = best.items()
        if ub:
            lines.append(f"- Ratio {a} / {b}: {ua / ub:.2f}x users held.")
    lines.append("")
    if plotted:
        lines += ["![scaling](scaling.png)", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--server",
        action="append",
        help="fastws, websockets, or a ws:// URL to target as is; repeat to compare (default fastws)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="fastws serve --workers N (0: one process, no master); default: fastws' default",
    )
    parser.add_argument("--server-args", default="", help="more fastws serve flags")
    parser.add_argument("--peer-loop", default="asyncio", choices=["asyncio", "uvloop"])
    parser.add_argument("--locustfile", default="echo.py", help="file in loadtests/")
    parser.add_argument("--locust-args", default="", help="more locust flags (e.g. --ws-rate 2)")
    parser.add_argument(
        "--name-to-measure", default="echo", help="the request name whose latency is reported"
    )
    parser.add_argument("--steps", default="", help="user steps for shape.py, e.g. 1000,5000")
    parser.add_argument("--step-hold", type=float, default=20.0)
    parser.add_argument("--step-rate", type=float, default=200.0)
    parser.add_argument(
        "--step-connect-timeout",
        type=float,
        default=120.0,
        help="hold a step anyway after waiting this long for its users to connect",
    )
    parser.add_argument("--users", type=int, default=100, help="without --steps")
    parser.add_argument("--spawn-rate", type=float, default=50.0, help="without --steps")
    parser.add_argument("--run-time", default="30s", help="without --steps")
    parser.add_argument("--processes", type=int, default=2, help="local locust processes")
    parser.add_argument(
        "--source-addresses",
        default="127.0.0.2-127.0.0.9",
        help="local addresses spread over (FASTWS_LOCUST_SOURCE_ADDRESSES); '' for the default",
    )
    parser.add_argument("--sample-interval", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=3600.0, help="kill locust after this")
    parser.add_argument("--name", default="", help="results directory name")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    # Stop cleanly (servers and locust included) on TERM, and on INT even when started in the
    # background, where a shell leaves SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    targets = args.server or ["fastws"]
    name = args.name or time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) / name
    out.mkdir(parents=True, exist_ok=True)

    runs, steps, timelines = [], [], {}
    for target in targets:
        run = run_one(target, args, out)
        runs.append(run)
        rows = timeline(run, args.name_to_measure)
        timelines[run.label] = rows
        write_csv(out / f"samples-{run.label}.csv", run.samples)
        write_csv(out / f"timeline-{run.label}.csv", rows)
        steps += summarize(run, rows)
        print(f"[{run.label}] locust exit code {run.exit_code}; {len(rows)} seconds recorded")
    write_csv(out / "steps.csv", steps)
    plotted = plot(out / "scaling.png", timelines, steps, args.name_to_measure)
    text = report(out, runs, steps, plotted, args)
    (out / "report.md").write_text(text)
    print(text)
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
