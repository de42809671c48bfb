"""python -m bench.asgi_goals: issue 19's goals against a matrix run, and the evidence for
the ones no server can reach on this machine.

    python -m bench.asgi_goals RUN [--workers2 RUN2] [--profile] [--syscalls]

RUN is the directory of a one-worker `python -m bench run` of the ASGI servers with raw-tcp
(results.json); RUN2 the same servers with `--workers 2`. Written to RUN/goals.md (and the
plot RUN/goals.png), printed too; what --profile and --syscalls measure also goes to
RUN/ceiling.md, which later calls include:

- **the goals**: fastws ASGI (and its zero-copy app) against the better uvicorn — for each
  figure the best of uvicorn's three WebSocket protocols in that run — and against Granian,
  messages (or MB) per second and per second of server CPU. Goals: >= 2x uvicorn and
  >= Granian on a-c, >= 3x uvicorn on d-e.
- **the ceiling**: raw-tcp, the C epoll echo (no WebSocket, no Python, no copy; it even
  echoes a large message while it is still arriving), against the same uvicorn in the same
  run. No WebSocket server can beat its rate, nor, making the same syscalls per message
  (`--syscalls`), use less CPU per message than it; where raw-tcp / uvicorn is below a goal,
  that goal cannot be reached here by any server.
- with `--profile`, **the kernel's share** (`perf record -e cpu-clock` on the server's
  processes, as `python -m bench profile --tool perf`) for fastws ASGI, uvicorn's default
  protocol and raw-tcp on a and d, and the CPU per message it stands for. A server with no
  user-space time at all and uvicorn's kernel cost per message would reach 1 / (uvicorn's
  kernel share) times uvicorn's figure per CPU: the bound on any improvement of the Python.
  Profiles run one at a time, after the matrix (the machine must be as quiet as for it).
- with `--syscalls`, the syscalls per echoed message (`strace -c -f` on the server's
  processes) of the same servers on the same scenarios.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .runner import medians

#: scenario -> (x uvicorn, also >= Granian)
GOALS: dict[str, tuple[float, bool]] = {
    "a": (2.0, True),
    "b": (2.0, True),
    "c": (2.0, True),
    "d": (3.0, False),
    "e": (3.0, False),
}
UVICORNS = ("uvicorn-websockets-sansio", "uvicorn-websockets", "uvicorn-wsproto")
#: uvicorn's default (--ws auto): the one profiled
UVICORN = "uvicorn-websockets-sansio"
PROFILED = ("fastws-asgi", UVICORN, "raw-tcp")
PROFILED_SCENARIOS = ("a", "d")


def _keys(scn: str) -> tuple[str, str]:
    """(rate, per CPU) metric keys: messages for 64-byte scenarios, MB for d and e."""
    return ("mb_per_s", "mb_per_cpu_s") if scn in ("d", "e") else ("msgs_per_s", "msgs_per_cpu_s")


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


@dataclass
class Ratios:
    """One scenario's figure (rate or per CPU) of one run, as ratios."""

    scenario: str
    figure: str  # "rate" or "per CPU"
    uvicorn: str | None  # the best uvicorn for this figure
    fastws: float | None  # fastws-asgi / uvicorn
    zero_copy: float | None  # fastws-asgi-zc / uvicorn
    granian: float | None  # fastws-asgi / granian
    ceiling: float | None  # raw-tcp / uvicorn


def ratios(summary: dict[str, dict[str, dict[str, float]]]) -> list[Ratios]:
    """The ratios of a run's medians (runner.medians), scenario by scenario."""
    out = []
    for scn in GOALS:
        by = summary.get(scn)
        if not by:
            continue
        for figure, key in zip(("rate", "per CPU"), _keys(scn), strict=True):

            def value(server: str, key: str = key, by: dict[str, Any] = by) -> float | None:
                return by.get(server, {}).get(key)

            best = max(
                ((u, v) for u in UVICORNS if (v := value(u))), key=lambda p: p[1], default=None
            )

            def over(server: str, base: float | None) -> float | None:
                v = value(server)
                return v / base if v and base else None

            base = best[1] if best else None
            out.append(
                Ratios(
                    scn,
                    figure,
                    best[0] if best else None,
                    over("fastws-asgi", base),
                    over("fastws-asgi-zc", base),
                    over("fastws-asgi", value("granian")),
                    over("raw-tcp", base),
                )
            )
    return out


def verdict(r: Ratios) -> str:
    goal, vs_granian = GOALS[r.scenario]
    if r.fastws is None:
        return "-"
    if r.fastws >= goal:
        if not vs_granian:
            return "met"
        if r.granian is None:
            return f"{goal:g}x met; Granian not in this run"
        return "met" if r.granian >= 1 else f"{goal:g}x met; below Granian"
    if r.ceiling is not None and r.ceiling < goal:
        return f"not met; unreachable: raw-tcp itself {r.ceiling:.2f}x"
    return "not met"


def goals_table(rows: list[Ratios]) -> list[str]:
    lines = [
        "| scenario | goal | figure | better uvicorn | fastws ASGI / uvicorn"
        " | zero-copy app / uvicorn | fastws ASGI / Granian | raw-tcp / uvicorn (ceiling) | |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        goal, vs_granian = GOALS[r.scenario]
        text = f"{goal:g}x uvicorn" + (", >= Granian" if vs_granian else "")
        lines.append(
            f"| {r.scenario} | {text} | {r.figure} | {r.uvicorn or '-'} | {_x(r.fastws)}"
            f" | {_x(r.zero_copy)} | {_x(r.granian)} | {_x(r.ceiling)} | {verdict(r)} |"
        )
    return lines


# -- the kernel's share -------------------------------------------------------------------


_DSO_ROW = re.compile(r"^\s*([\d.]+)%\s+(\S+)")


def dso_shares(report: str) -> dict[str, float]:
    """{"kernel", "python", "uvloop", "other"} -> % of the samples, from the "self % by dso"
    part of `python -m bench profile --tool perf`'s report."""
    shares = {"kernel": 0.0, "python": 0.0, "uvloop": 0.0, "other": 0.0}
    section = report.split("\n\n", 1)[0]
    for line in section.splitlines()[1:]:
        m = _DSO_ROW.match(line)
        if not m:
            continue
        pct, dso = float(m.group(1)), m.group(2)
        if dso == "[kernel.kallsyms]":
            shares["kernel"] += pct
        elif dso.startswith("libpython") or dso == "python3.11":
            shares["python"] += pct
        elif dso.startswith("loop.cpython"):
            shares["uvloop"] += pct
        else:
            shares["other"] += pct
    return shares


def profile(
    servers: tuple[str, ...], scenarios: tuple[str, ...], duration: float, out: Path
) -> list[dict[str, Any]]:
    """Run `bench profile --tool perf` for each (scenario, server); rows for the table."""
    from .profile import _perf
    from .runner import Options, Runner
    from .scenarios import SCENARIOS
    from .servers import SERVERS

    rows = []
    for scn_key in scenarios:
        scn = SCENARIOS[scn_key]
        for name in servers:
            spec = SERVERS[name]
            where = out / f"profile-{scn_key}-{name}"
            where.mkdir(parents=True, exist_ok=True)
            opts = Options(duration=duration, warmup=1.0)
            runner = Runner([spec], [scn], opts, where, log=lambda _s: None)
            args = argparse.Namespace(duration=duration, top=20)
            rec, report = _perf(spec, scn, opts, runner, where, args)
            (where / "summary.txt").write_text(report)
            per_cpu = rec.get("metrics", {}).get(_keys(scn_key)[1])
            rows.append(
                {"scenario": scn_key, "server": name, "per_cpu": per_cpu,
                 "shares": dso_shares(report) if report else None, "error": rec.get("error")}
            )  # fmt: skip
            print(f"[{scn_key}] {name}: {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def kernel_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| scenario | server | per server CPU-s (profiled run) | kernel | interpreter | uvloop"
        " | other | CPU µs per message: kernel / user |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        s, per_cpu = row["shares"], row["per_cpu"]
        if not s or not per_cpu:
            lines.append(f"| {row['scenario']} | {row['server']} | failed: {row['error']} |")
            continue
        unit = "MB" if row["scenario"] in ("d", "e") else "msgs"
        # d's "message" is 1 MiB: CPU per message from MB per CPU-s
        msgs_per_cpu = per_cpu / 1.048576 if unit == "MB" else per_cpu
        us = 1e6 / msgs_per_cpu
        kernel = us * s["kernel"] / 100
        lines.append(
            f"| {row['scenario']} | {row['server']} | {per_cpu:,.0f} {unit} | {s['kernel']:.0f} %"
            f" | {s['python']:.0f} % | {s['uvloop']:.0f} % | {s['other']:.0f} %"
            f" | {kernel:,.1f} / {us - kernel:,.1f} |"
        )
    return lines


def bounds(rows: list[dict[str, Any]]) -> list[str]:
    """What no user-space work at all would give against uvicorn, per scenario."""
    lines = []
    for scn in dict.fromkeys(r["scenario"] for r in rows):
        by = {r["server"]: r for r in rows if r["scenario"] == scn}
        u = by.get(UVICORN)
        if not u or not u["shares"] or not u["shares"]["kernel"]:
            continue
        bound = 100 / u["shares"]["kernel"]
        line = (
            f"- {scn}: a server with no user-space time and uvicorn's kernel cost per message:"
            f" {bound:.2f}x uvicorn per CPU (its kernel share {u['shares']['kernel']:.0f} %)"
        )
        raw, fastws = by.get("raw-tcp"), by.get("fastws-asgi")
        if raw and raw["per_cpu"] and u["per_cpu"]:
            line += f"; raw-tcp in these profiled runs {raw['per_cpu'] / u['per_cpu']:.2f}x"
        if fastws and fastws["per_cpu"] and u["per_cpu"]:
            line += f", fastws ASGI {fastws['per_cpu'] / u['per_cpu']:.2f}x"
        lines.append(line + f"; goal {GOALS[scn][0]:g}x.")
    return lines


# -- the syscalls per message ------------------------------------------------------------


def strace_counts(text: str) -> dict[str, int]:
    """syscall -> calls, from `strace -c`'s table (its errors column may be empty)."""
    counts = {}
    for line in text.splitlines():
        cols = line.split()
        if len(cols) >= 5 and cols[0][0].isdigit() and cols[-1] != "total":
            counts[cols[-1]] = int(cols[3])
    return counts


def syscalls(servers: tuple[str, ...], scn_key: str, duration: float, out: Path) -> list[str]:
    """`strace -c -f` on each server's processes for one load run of `scn_key` (no warm-up:
    every echo counted); the syscalls per echoed message, as table rows. strace slows the
    server down; the count per message is what it measures, not time."""
    from .procs import ServerProcess, free_port
    from .runner import HOST, Options, Runner
    from .scenarios import SCENARIOS
    from .servers import SERVERS

    strace = shutil.which("strace")
    if strace is None:
        return ["(strace is not installed: apt-get install strace)"]
    scn = SCENARIOS[scn_key]
    lines = [
        "| server | syscalls per message | of which |",
        "|---|---|---|",
    ]
    for name in servers:
        spec = SERVERS[name]
        where = out / f"strace-{scn_key}-{name}"
        where.mkdir(parents=True, exist_ok=True)
        runner = Runner([spec], [scn], Options(duration=duration), where, log=lambda _s: None)
        port = free_port(HOST)
        argv = spec.argv(HOST, port, runner.bins, None)
        server = ServerProcess(argv, HOST, port, runner.opt.server_cpus, where / "server.log")
        report = where / "strace.txt"
        load = {"conns": scn.conns, "depth": scn.depth, "size": scn.size, "text": scn.text}
        try:
            server.wait_listening()
            runner._loadgen(spec, port, **load, warmup=0.0, duration=0.2, procs=1)  # serving
            pids = [arg for pid in server.tree() for arg in ("-p", str(pid))]
            trace = subprocess.Popen(
                [strace, "-c", "-f", "-o", str(report), *pids],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(0.5)  # attached to every process
            lg = runner._loadgen(spec, port, **load, warmup=0.0, duration=duration, procs=1)
            trace.send_signal(signal.SIGINT)
            trace.wait(30)
        finally:
            server.stop()
        counts = strace_counts(report.read_text()) if report.exists() else {}
        echoed = lg.get("verified") or 0
        if not counts or not echoed:
            lines.append(f"| {name} | failed | |")
            continue
        per = {k: v / echoed for k, v in counts.items() if v / echoed >= 0.01}
        total = sum(counts.values()) / echoed
        which = ", ".join(f"{k} {v:.2f}" for k, v in sorted(per.items(), key=lambda kv: -kv[1]))
        lines.append(f"| {name} | {total:.2f} | {which} |")
        print(f"[{scn_key}] {name}: {total:.2f} syscalls per message ({which})", file=sys.stderr)
    return lines


# -- the plot -----------------------------------------------------------------------------


def plot(path: Path, one: list[Ratios], two: list[Ratios] | None) -> bool:
    """Bars of the ratios to the better uvicorn per scenario, the goal marked on each."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    series = [  # (label, ratios, attribute, figure, color): per CPU hatched
        ("fastws ASGI, rate", one, "fastws", "rate", "C0"),
        ("fastws ASGI, per CPU", one, "fastws", "per CPU", "C0"),
        ("raw-tcp (ceiling), rate", one, "ceiling", "rate", "C7"),
        ("raw-tcp (ceiling), per CPU", one, "ceiling", "per CPU", "C7"),
    ]
    if two:
        series += [
            ("fastws ASGI, 2 workers, rate", two, "fastws", "rate", "C2"),
            ("fastws ASGI, 2 workers, per CPU", two, "fastws", "per CPU", "C2"),
        ]
    scns = list(dict.fromkeys(r.scenario for r in one))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(series)
    for i, (label, rows, attr, figure, color) in enumerate(series):
        xs, ys = [], []
        for j, scn in enumerate(scns):
            r = next((r for r in rows if r.scenario == scn and r.figure == figure), None)
            if r is not None and getattr(r, attr):
                xs.append(j + (i - (len(series) - 1) / 2) * width)
                ys.append(getattr(r, attr))
        hatch = "//" if figure == "per CPU" else ""
        ax.bar(xs, ys, width, label=label, color=color, hatch=hatch, edgecolor="white")
    for j, scn in enumerate(scns):
        ax.hlines(GOALS[scn][0], j - 0.45, j + 0.45, colors="k", linestyles="--")
    ax.axhline(1, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(scns)), [f"{s})" for s in scns])
    ax.set_yscale("log")
    ticks = [0.5, 1, 2, 3, 5, 10, 20, 50, 100]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_ylabel("x the better uvicorn (log)")
    ax.set_title("ASGI (same Starlette echo app): fastws and raw-tcp over uvicorn; dashes: goal")
    ax.legend(fontsize="x-small", ncol=2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _load(run: Path) -> tuple[dict[str, Any], list[Ratios]]:
    data = json.loads((run / "results.json").read_text())
    return data["meta"], ratios(medians(data["runs"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.asgi_goals", description=__doc__)
    parser.add_argument("run", type=Path, help="a one-worker run's directory (results.json)")
    parser.add_argument("--workers2", type=Path, default=None, help="the --workers 2 run's")
    parser.add_argument("--profile", action="store_true", help="perf profiles of a and d too")
    parser.add_argument("--profile-duration", type=float, default=4.0)
    parser.add_argument("--profile-servers", default=",".join(PROFILED))
    parser.add_argument("--profile-scenarios", default=",".join(PROFILED_SCENARIOS))
    parser.add_argument(
        "--syscalls",
        action="store_true",
        help="strace -c: syscalls per message, the servers and scenarios of --profile",
    )
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    meta, one = _load(args.run)
    lines = [
        f"# Issue 19's goals, {meta['date']}",
        "",
        f"Run: `{meta['command']}` (fastws at {meta.get('commit')}; load average"
        f" {meta['loadavg_start']} at the start, {meta.get('loadavg_end')} at the end)",
        "",
        *goals_table(one),
    ]
    two = None
    if args.workers2 is not None:
        meta2, two = _load(args.workers2)
        lines += [
            "",
            f"Two workers: `{meta2['command']}` (load average {meta2['loadavg_start']} at the"
            f" start, {meta2.get('loadavg_end')} at the end)",
            "",
            *goals_table(two),
        ]
    # The profiles and syscall counts (slow, run once, right after the run they explain):
    # RUN/ceiling.md, included in goals.md from then on. Their raw files (perf.data, logs)
    # go to bench/results/tmp/ (not committed).
    ceiling = args.run / "ceiling.md"
    work = Path(__file__).resolve().parent / "results" / "tmp" / f"{args.run.name}-ceiling"
    measured: list[str] = []
    if args.profile:
        rows = profile(
            tuple(args.profile_servers.split(",")),
            tuple(args.profile_scenarios.split(",")),
            args.profile_duration,
            work,
        )
        measured += [
            "",
            f"Where the server's CPU goes (`perf record -e cpu-clock`, {args.profile_duration:g} s"
            " after 1 s of warm-up, one worker, one profile at a time):",
            "",
            *kernel_table(rows),
            "",
            *bounds(rows),
        ]
    for scn_key in args.profile_scenarios.split(",") if args.syscalls else ():
        measured += [
            "",
            f"Syscalls per echoed message on {scn_key} (`strace -c -f` on the server's processes"
            " during one load run of 2 s, no warm-up: every echo counted):",
            "",
            *syscalls(tuple(args.profile_servers.split(",")), scn_key, 2.0, work),
        ]
    if measured:
        head = (
            f"## The ceiling, measured {_now()} (load average {_loadavg()} at the end):"
            f" `python -m bench.asgi_goals {args.run}{' --profile' if args.profile else ''}"
            f"{' --syscalls' if args.syscalls else ''}`"
        )
        ceiling.write_text("\n".join([head, *measured]) + "\n")
    if ceiling.exists():
        lines += ["", ceiling.read_text().rstrip()]
    if not args.no_plot and plot(args.run / "goals.png", one, two):
        lines += ["", "![goals.png](goals.png)"]
    text = "\n".join(lines) + "\n"
    (args.run / "goals.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
