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
import json
import os
import re
import shlex
import signal
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
# Run as a script (`python loadtests/run.py`): the process harness lives in bench/ at the
# repository root, and the report beside this file.
for _path in (str(REPO_ROOT), str(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from report import Run, plot, report, summarize, timeline, write_csv  # noqa: E402

from bench import procs  # noqa: E402

# -- processes ----------------------------------------------------------------------------------


def tree_usage(root: int | None) -> tuple[int, int, dict[int, float]]:
    """(RSS bytes, PSS bytes, {pid: CPU seconds}) over `root` and its descendants.

    RSS counts pages shared by forked workers once per process; PSS splits them, so the sum
    is the tree's real footprint. CPU is kept per process: a process leaving the tree must
    not make the tree's CPU time go backwards.
    """
    if root is None:
        return 0, 0, {}
    pids = procs.descendants(root)
    return procs.rss_bytes(pids), procs.pss_bytes(pids), procs.cpu_by_pid(pids)


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
    """Prometheus text format (or a flat JSON object) to {name: value}; labels kept in names,
    and each labelled metric's sum under its bare name (fastws has one series per worker)."""
    text = text.strip()
    if text.startswith("{"):
        data = json.loads(text)
        return {k: float(v) for k, v in data.items() if isinstance(v, int | float)}
    values: dict[str, float] = {}
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            values[name.strip()] = float(value)
            if "{" in name:  # per worker: the server's figure is the sum of its series
                base = name.partition("{")[0]
                sums[base] = sums.get(base, 0.0) + float(value)
    for base, total in sums.items():
        values.setdefault(base, total)
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
    server: procs.ServerProcess | None = None
    server_cmd: list[str] | None = None
    if target in ("fastws", "websockets"):
        label = target
        port = procs.free_port(host)
        server_cmd = server_command(target, host, port, args)
        url = f"ws://{host}:{port}/"
        server = procs.ServerProcess(
            server_cmd,
            host,
            port,
            log_path=out / f"server-{label}.log",
            cwd=REPO_ROOT,
            fd_limit=True,
        )
        server.wait_listening(20)
        print(f"[{label}] server listening: {shlex.join(server_cmd)}", flush=True)
    else:
        url = target
        parts = urlsplit(url)
        label = re.sub(r"[^A-Za-z0-9.-]+", "_", parts.netloc)
        port = parts.port or 80
        host = parts.hostname or host
    try:
        metrics = metrics_url_for(host, port) if server is not None else None
        sampler = Sampler(server.pid if server else None, port, metrics, args.sample_interval)
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
                preexec_fn=procs.raise_fd_limit,
            )
            sampler.locust_pid = locust.pid
            sampler.start()
            try:
                exit_code = locust.wait(args.timeout)
            except subprocess.TimeoutExpired:
                print(f"[{label}] locust still running after {args.timeout} s: stopping it")
                exit_code = -1
            finally:
                procs.stop_process(locust, 15, group_term=True)
                sampler.stop()
        ended = time.time()
        print(f"[{label}] locust finished in {ended - started:.1f} s", flush=True)
    finally:
        if server is not None:
            server.stop(10, group_term=True)
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
