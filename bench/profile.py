"""python -m bench profile: where fastws' time goes under one scenario of the matrix.

Two tools:
- py-spy (sampling, no slowdown of the server): attached to the running server (and its
  workers) for the measured window; writes folded stacks (fastws.folded, for speedscope or flamegraph.pl) and
  prints the functions with the most samples, self and inclusive.
- cProfile (deterministic, slows Python code down by ~2x, so it inflates pure-Python
  parts against C ones): the server runs under `python -m cProfile`; writes fastws.prof
  and prints the top functions by own time.
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
from dataclasses import replace
from pathlib import Path

from .procs import ServerProcess, free_port
from .runner import HOST, Options, Runner, _summary_line
from .scenarios import SCENARIOS
from .servers import SERVERS

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
    scn = SCENARIOS[args.scenario]
    if scn.idle:
        print(f"profile runs a load scenario (a-e, g, h), not {scn.key}", file=sys.stderr)
        return 2
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d-%H%M%S")
    out: Path = args.out or RESULTS / "tmp" / f"profile-{scn.key}-{args.tool}-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    spec = SERVERS[os.environ.get("FASTWS_PROFILE_SERVER", "fastws")]
    opts = Options(duration=args.duration, warmup=1.0)
    runner = Runner([spec], [scn], opts, out)
    if args.tool == "cprofile":
        prof = out / "fastws.prof"
        base = spec.command

        def command(host: str, port: int, bins: dict[str, Path]) -> list[str]:
            argv = base(host, port, bins)
            if "--workers" in argv:  # cProfile sees one process: serve without a master
                argv[argv.index("--workers") + 1] = "0"
            return [argv[0], "-m", "cProfile", "-o", str(prof), *argv[1:]]

        rec = runner.run_one(replace(spec, command=command), scn, 0)
        print(_summary_line(scn, rec))
        if not prof.exists():
            print("no profile written (did the server stop gracefully?)", file=sys.stderr)
            return 1
        text = io.StringIO()
        pstats.Stats(str(prof), stream=text).sort_stats("tottime").print_stats(args.top)
        report = text.getvalue()
    else:
        pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(pyspy).exists():
            print("py-spy is not installed (pip install py-spy)", file=sys.stderr)
            return 2
        folded = out / "fastws.folded"
        port = free_port(HOST)
        server = ServerProcess(
            spec.argv(HOST, port, runner.bins, scn.deflate),
            HOST,
            port,
            opts.server_cpus,
            out / "server.log",
        )
        rec = {"ok": True, "metrics": {}, "error": None}
        try:
            server.wait_listening()
            # Sample the measured window only: start after the warm-up.
            record = [
                pyspy, "record", "--pid", str(server.pid), "--rate", "250", "--format", "raw",
                "--duration", str(int(args.duration)), "--output", str(folded), "--subprocesses",
            ]  # fmt: skip
            # --native: C frames too (uvloop, numpy, the syscalls' callers); it must stop the
            # process to unwind, so it slows the server a little.
            record += ["--native"] if args.native else ["--nonblocking"]
            timer = threading.Timer(
                opts.warmup + 0.3,
                lambda: spy.append(subprocess.Popen(record, stderr=subprocess.DEVNULL)),
            )
            spy: list[subprocess.Popen[bytes]] = []
            timer.start()
            runner._run_load(spec, scn, server, port, rec)
            timer.join()
            for p in spy:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(30)
        finally:
            server.stop()
        print(_summary_line(scn, rec))
        if not folded.exists():
            print("py-spy wrote nothing (ptrace not allowed here?)", file=sys.stderr)
            return 1
        report = folded_summary(folded, args.top)
    (out / "summary.txt").write_text(report)
    print(report)
    print(f"written to {out}")
    return 0
