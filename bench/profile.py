"""python -m bench profile: where fastws' time goes under one scenario of the matrix.

Three tools:
- py-spy (sampling, no slowdown of the server): attached to the running server (and its
  workers) for the measured window; writes folded stacks (fastws.folded, for speedscope or flamegraph.pl) and
  prints the functions with the most samples, self and inclusive.
- cProfile (deterministic, slows Python code down by ~2x, so it inflates pure-Python
  parts against C ones): the server runs under `python -m cProfile`; writes fastws.prof
  and prints the top functions by own time.
- perf (Linux `perf record -e cpu-clock`, kernel included): where the server's CPU time
  goes by shared object ([kernel.kallsyms], libpython, uvloop, ...) and by symbol. Python
  3.11 shows Python code as the interpreter's C functions; what share of the interpreter's
  time is whose code, py-spy tells. The kernel's share is what no server written in Python
  can save: the syscalls and wake-ups of each message.

`--server NAME` (or the environment variable FASTWS_PROFILE_SERVER) profiles another server
of the matrix the same way, e.g. `--server uvicorn-websockets` next to `--server fastws-asgi`.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import io
import os
import pstats
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from .procs import ServerProcess, free_port
from .runner import HOST, Options, Runner, _summary_line
from .scenarios import Scenario, scenario
from .servers import SERVERS, ServerSpec

RESULTS = Path(__file__).resolve().parent / "results"


def folded_summary(path: Path, top: int) -> str:
    """Self and inclusive sample shares per function (lines merged) from py-spy's folded
    stacks."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        # "WebSocket._flush (fastws/websocket.py:470)" -> "WebSocket._flush (fastws/websocket.py)"
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            incl[frame] += n
    out = [f"{total} samples", "", "self %  function (file:line)"]
    out += [f"{n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    out += ["", "inclusive %  function (file:line)"]
    out += [f"{n / total:6.1%}  {f}" for f, n in incl.most_common(top)]
    return "\n".join(out)


def cmd_profile(args: argparse.Namespace) -> int:
    scn = scenario(args.scenario)  # "d", or "d@chromium": under a client shape
    if scn.idle:
        print(f"profile runs a load scenario (a-e, g, h), not {scn.key}", file=sys.stderr)
        return 2
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d-%H%M%S")
    out: Path = args.out or RESULTS / "tmp" / f"profile-{scn.key}-{args.tool}-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    spec = SERVERS[args.server or os.environ.get("FASTWS_PROFILE_SERVER", "fastws")]
    opts = Options(duration=args.duration, warmup=1.0, workers=args.workers)
    if args.workers > 1:  # as `bench run --workers N`: server and generator share every cpu
        opts.server_cpus = opts.client_cpus = set(os.sched_getaffinity(0))
    runner = Runner([spec], [scn], opts, out)
    if args.tool == "cprofile":
        prof = out / "fastws.prof"
        base = spec.command

        def command(host: str, port: int, bins: dict[str, Path]) -> list[str]:
            argv = base(host, port, bins)
            if "--workers" in argv:  # cProfile sees one process: serve without a master
                argv[argv.index("--workers") + 1] = "0"
            # after the interpreter: the ASGI servers' commands start with `env VAR=...`
            at = argv.index(sys.executable) + 1 if sys.executable in argv else 1
            return [*argv[:at], "-m", "cProfile", "-o", str(prof), *argv[at:]]

        rec = runner.run_one(replace(spec, command=command), scn, 0)
        print(_summary_line(scn, rec))
        if not prof.exists():
            print("no profile written (did the server stop gracefully?)", file=sys.stderr)
            return 1
        text = io.StringIO()
        pstats.Stats(str(prof), stream=text).sort_stats("tottime").print_stats(args.top)
        report = text.getvalue()
    elif args.tool == "perf":
        rec, report = _perf(spec, scn, opts, runner, out, args)
        print(_summary_line(scn, rec))
        if not report:
            return 1
    else:
        pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(pyspy).exists():
            print("py-spy is not installed (pip install py-spy)", file=sys.stderr)
            return 2
        folded = out / "fastws.folded"

        def record(server: ServerProcess) -> list[str]:
            argv = [
                pyspy, "record", "--pid", str(server.pid), "--rate", "250", "--format", "raw",
                "--duration", str(int(args.duration)), "--output", str(folded), "--subprocesses",
            ]  # fmt: skip
            # --native: C frames too (uvloop, numpy, the syscalls' callers); it must stop the
            # process to unwind, so it slows the server a little.
            return argv + (["--native"] if args.native else ["--nonblocking"])

        rec = _sampled(spec, scn, opts, runner, out, record)
        print(_summary_line(scn, rec))
        if not folded.exists():
            print("py-spy wrote nothing (ptrace not allowed here?)", file=sys.stderr)
            return 1
        report = folded_summary(folded, args.top)
    (out / "summary.txt").write_text(report)
    print(report)
    print(f"written to {out}")
    return 0


def _perf(
    spec: ServerSpec, scn: Scenario, opts: Options, runner: Runner, out: Path, args: Any
) -> tuple[dict[str, Any], str]:
    """`perf record` on the server's processes for the measured window; (record, report)."""
    perf = shutil.which("perf")
    if perf is None:
        print("perf is not installed (apt-get install linux-perf)", file=sys.stderr)
        return {"ok": False, "metrics": {}, "error": "no perf"}, ""
    data = out / "perf.data"

    def record(server: ServerProcess) -> list[str]:
        pids = ",".join(str(p) for p in server.tree())
        return [
            perf, "record", "-e", "cpu-clock", "-F", "2999", "-g", "-o", str(data), "--pid",
            pids, "--", "sleep", str(args.duration),
        ]  # fmt: skip

    rec = _sampled(spec, scn, opts, runner, out, record)
    if not data.exists():
        print("perf wrote nothing (perf_event_paranoid?)", file=sys.stderr)
        return rec, ""
    parts = []
    for sort in ("dso", "dso,sym"):
        text = subprocess.run(
            [perf, "report", "-i", str(data), "--no-children", "--sort", sort, "--stdio",
             "-g", "none", "--percent-limit", "0.5"],
            capture_output=True, text=True, check=False,
        ).stdout  # fmt: skip
        rows = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
        parts.append(f"self % by {sort}\n" + "\n".join(rows[: args.top]))
    return rec, "\n\n".join(parts)


def _sampled(
    spec: ServerSpec,
    scn: Scenario,
    opts: Options,
    runner: Runner,
    out: Path,
    record: Callable[[ServerProcess], list[str]],
) -> dict[str, Any]:
    """Run `scn` against a fresh server with the sampler `record(server)` attached for the
    measured window (started after the warm-up); the run's record."""
    port = free_port(HOST)
    server = ServerProcess(
        spec.argv(HOST, port, runner.bins, scn.deflate, opts.workers), HOST, port,
        opts.server_cpus,
        out / "server.log",
    )  # fmt: skip
    rec: dict[str, Any] = {"ok": True, "metrics": {}, "error": None}
    spy: list[subprocess.Popen[bytes]] = []
    try:
        server.wait_listening()
        # The command is made when the sampler starts: by then a master has forked its
        # workers (they may not exist yet when the listening socket first answers).
        timer = threading.Timer(
            opts.warmup + 0.3,
            lambda: spy.append(
                subprocess.Popen(
                    record(server), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            ),
        )
        timer.start()
        runner._run_load(spec, scn, server, port, rec)
        timer.join()
        for p in spy:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(30)
    finally:
        server.stop()
    return rec
