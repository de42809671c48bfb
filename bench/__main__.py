"""python -m bench: end-to-end benchmarks of fastws against its peers (see bench/README.md).

python -m bench run [--servers fastws,websockets,...] [--scenarios a,b,c,d,e,f,g] [...]
python -m bench profile [--scenario c] [--tool cprofile|py-spy|perf] [--server NAME]
python -m bench list
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from .build import BuildError
from .procs import cpu_split
from .report import markdown, plots, write_json
from .runner import Options, Runner
from .scenarios import SCENARIOS, SHAPES, with_shape
from .servers import DEFAULT_SERVERS, SERVERS, fastws_asgi_trees, fastws_tree

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _cpuset(value: str) -> set[int]:
    return {int(v) for v in _csv(value)}


def _machine() -> str:
    model = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{model}, {os.cpu_count()} cpus, {mem:.0f} GiB RAM, Linux {platform.release()},"
        f" Python {platform.python_version()}"
    )


def _versions() -> dict[str, str]:
    out = {}
    for name in ("fastws", "websockets", "aiohttp", "picows", "uvloop", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _commit() -> str | None:
    """The commit benchmarked, and whether fastws/ had uncommitted changes then."""

    def git(*args: str) -> str:
        proc = subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
        )
        return proc.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    if commit and git("status", "--porcelain", "--", "fastws"):
        commit += " + uncommitted changes in fastws/"
    return commit or None


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the scenario matrix against the servers")
    run.add_argument(
        "--servers", type=_csv, default=DEFAULT_SERVERS, help="comma-separated (see list)"
    )
    run.add_argument("--scenarios", type=_csv, default=list("abcdefg"), help="comma-separated, a-i")
    run.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    run.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring")
    run.add_argument("--repeat", type=int, default=1, help="runs per server and scenario (median)")
    run.add_argument("--idle-conns", type=int, default=10_000, help="scenario f's connections")
    run.add_argument("--idle-steps", type=lambda v: tuple(map(int, _csv(v))), default=(),
                     help="connection counts at which f reads RSS (default N/10,N/4,N/2,N)")  # fmt: skip
    run.add_argument("--hs-concurrency", type=int, default=100, help="f: handshakes at once")
    run.add_argument("--sources", type=int, default=8, help="f: source addresses 127.0.0.2...")
    run.add_argument("--settle", type=float, default=0.5, help="f: seconds before reading RSS")
    run.add_argument("--client-procs", type=int, default=0, help="load generator processes")
    run.add_argument("--server-cpus", type=_cpuset, default=None, help="e.g. 0")
    run.add_argument("--client-cpus", type=_cpuset, default=None, help="e.g. 1")
    run.add_argument("--client-shape", type=_csv, default=["default"],
                     help="comma-separated client shapes (see list): each scenario runs under"
                     " each; a shape other than default shows as e.g. e@chromium")  # fmt: skip
    run.add_argument("--workers", type=int, default=1,
                     help="server processes: fastws --workers N, N SO_REUSEPORT processes for"
                     " picows, aiohttp and raw-tcp, the ASGI servers' own --workers N (others"
                     " skipped); server and generator share all"
                     " cpus unless --server-cpus/--client-cpus say otherwise")  # fmt: skip
    run.add_argument("--fastws-tree", type=Path, default=None,
                     help="a fastws source tree to run as server fastws-tree (A/B in one run;"
                          " also fastws-asgi-tree, fastws-asgi-zc-tree)")  # fmt: skip
    run.add_argument("--out", type=Path, default=None, help="default bench/results/<date>")
    run.add_argument("--no-plots", action="store_true")
    prof = sub.add_parser("profile", help="profile fastws under one scenario")
    prof.add_argument("--scenario", default="c", help='a scenario, e.g. "d", or "d@chromium"')
    prof.add_argument("--tool", choices=("cprofile", "py-spy", "perf"), default="cprofile")
    prof.add_argument("--server", default=None, help="a server of the matrix (default fastws)")
    prof.add_argument("--duration", type=float, default=5.0)
    prof.add_argument("--top", type=int, default=30)
    prof.add_argument("--native", action="store_true", help="py-spy: sample C frames too")
    prof.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes, as `run --workers N` (sharing every cpu)",
    )
    prof.add_argument("--out", type=Path, default=None)
    rep = sub.add_parser("report", help="render results.md and plots again from results.json")
    rep.add_argument("dir", type=Path)
    rep.add_argument("--no-plots", action="store_true")
    sub.add_parser("list", help="list the servers and scenarios")
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    if args.fastws_tree is not None:
        if not (args.fastws_tree / "fastws" / "__init__.py").is_file():
            print(f"--fastws-tree {args.fastws_tree}: no fastws/ package there")
            return 2
        SERVERS["fastws-tree"] = fastws_tree(args.fastws_tree)
        SERVERS.update((s.name, s) for s in fastws_asgi_trees(args.fastws_tree))
    unknown = [s for s in args.servers if s not in SERVERS]
    unknown += [s for s in args.scenarios if s not in SCENARIOS]
    unknown += [s for s in args.client_shape if s not in SHAPES]
    if unknown:
        print(f"unknown server/scenario: {', '.join(unknown)} (see: python -m bench list)")
        return 2
    now = datetime.datetime.now(datetime.UTC)
    out: Path = args.out or RESULTS / now.strftime("%Y-%m-%d-%H%M%S")
    # The servers' output: next to the results when --out is given, else under the ignored
    # bench/results/tmp/ so that a dated results directory holds only what gets committed.
    logs = out / "logs" if args.out else RESULTS / "tmp" / f"{out.name}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    server_cpus, client_cpus = cpu_split()
    if args.workers > 1:  # N server processes need more than the first cpu
        server_cpus = client_cpus = server_cpus | client_cpus
    options = Options(
        duration=args.duration,
        warmup=args.warmup,
        repeat=args.repeat,
        idle_conns=args.idle_conns,
        idle_steps=args.idle_steps,
        hs_concurrency=args.hs_concurrency,
        sources=args.sources,
        settle=args.settle,
        client_procs=args.client_procs,
        server_cpus=args.server_cpus or server_cpus,
        client_cpus=args.client_cpus or client_cpus,
        workers=args.workers,
    )
    servers = [SERVERS[s] for s in args.servers]
    scenarios = [
        with_shape(SCENARIOS[s], shape)
        for s in sorted(args.scenarios)
        for shape in args.client_shape
    ]
    try:
        runner = Runner(servers, scenarios, options, logs)
    except BuildError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    meta: dict[str, Any] = {
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(),
        "versions": _versions(),
        "commit": _commit(),
        "command": "python -m bench " + shlex.join(sys.argv[1:]),
        "server_cpus": sorted(options.server_cpus),
        "client_cpus": sorted(options.client_cpus),
        "client_procs": options.client_procs,
        "loadavg_start": _loadavg(),
        "servers": {s.name: s.description for s in servers},
        "options": {
            "duration": options.duration,
            "warmup": options.warmup,
            "repeat": options.repeat,
            "idle_conns": options.idle_conns,
            "idle_steps": list(options.steps()),
            "hs_concurrency": options.hs_concurrency,
            "sources": options.sources,
            "workers": options.workers,
            "client_shapes": {k: SHAPES[k].description for k in args.client_shape},
        },
    }
    # A TERM (e.g. `kill`) unwinds like Ctrl-C, so the server of the current run is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    records = runner.run(lambda recs: write_json(out / "results.json", meta, recs))
    meta["loadavg_end"] = _loadavg()
    render(out, meta, records, plot=not args.no_plots)
    print(out / "results.md")
    failed = [r for r in records if not r["ok"] and not r.get("skipped")]
    return 1 if failed else 0


def render(out: Path, meta: dict[str, Any], records: list[dict[str, Any]], plot: bool) -> None:
    """results.json, the PNG plots and results.md in `out`."""
    meta["plots"] = plots(out, records, list(meta["servers"])) if plot else []
    write_json(out / "results.json", meta, records)
    (out / "results.md").write_text(markdown(meta, records, list(meta["servers"])))


def cmd_report(args: argparse.Namespace) -> int:
    """Render results.md and the plots again from a run's results.json."""
    data = json.loads((args.dir / "results.json").read_text())
    data["meta"].setdefault("loadavg_end", "?")
    render(args.dir, data["meta"], data["runs"], plot=not args.no_plots)
    print(args.dir / "results.md")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if args.command == "list":
        for spec in SERVERS.values():
            missing = spec.missing()
            print(
                f"{spec.name:18} {spec.description}" + (f" [missing {missing}]" if missing else "")
            )
        for scn in SCENARIOS.values():
            print(f"  {scn.describe()}")
        print("client shapes (--client-shape):")
        for shape in SHAPES.values():
            print(f"  {shape.name:14} {shape.description}")
        return 0
    if args.command == "report":
        return cmd_report(args)
    if args.command == "profile":
        from .profile import cmd_profile

        return cmd_profile(args)
    return cmd_run(args)


if __name__ == "__main__":
    sys.exit(main())
