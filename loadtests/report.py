"""The report of a load test: locust's CSVs and the runner's samples turned into a timeline per
server, a row per held step, the most connections held under the latency bound, a plot and a
markdown page. Used by loadtests/run.py, which runs the servers and locust and samples them.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["P99_BOUND_MS", "Run", "plot", "report", "summarize", "timeline", "write_csv"]

#: The latency bound of "connections held": p99 of the measured request under this.
P99_BOUND_MS = 100.0


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
