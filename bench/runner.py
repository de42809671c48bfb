"""Run the matrix: for each scenario, each server in turn, fresh, pinned, measured, stopped.

Scenario-major order (all servers on scenario a, then all on b, ...) keeps the runs that are
compared with each other close in time, so background load on a shared machine hits them
alike; with --repeat the servers alternate within each round and the report takes medians.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .build import build
from .procs import (
    ServerProcess,
    cpu_by_pid,
    cpu_seconds,
    cpu_split,
    free_port,
    hwm_bytes,
    raise_fd_limit,
    rss_bytes,
)
from .scenarios import SHAPES, Scenario
from .servers import ServerSpec

HOST = "127.0.0.1"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclass
class Options:
    duration: float = 5.0
    warmup: float = 1.0
    repeat: int = 1
    idle_conns: int = 10_000
    idle_steps: tuple[int, ...] = ()  # default: N/10, N/4, N/2, N
    hs_concurrency: int = 100
    sources: int = 8  # 127.0.0.2 ... 127.0.0.9 as source addresses for scenario f
    client_procs: int = 0  # 0: one per load-generator cpu
    settle: float = 0.5  # seconds between opening idle connections and reading RSS
    server_cpus: set[int] = field(default_factory=set)
    client_cpus: set[int] = field(default_factory=set)
    #: server processes (fastws --workers N; N SO_REUSEPORT processes for the peers that
    #: have a multi-process mode; the others are skipped when N > 1)
    workers: int = 1

    def steps(self) -> tuple[int, ...]:
        n = self.idle_conns
        raw = self.idle_steps or (n // 10, n // 4, n // 2, n)
        return tuple(sorted({max(1, min(s, n)) for s in raw} | {n}))


def _accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


class Runner:
    def __init__(
        self,
        servers: list[ServerSpec],
        scenarios: list[Scenario],
        options: Options,
        workdir: Path,
        log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
    ) -> None:
        self.servers = servers
        self.scenarios = scenarios
        self.opt = options
        if not options.server_cpus or not options.client_cpus:
            options.server_cpus, options.client_cpus = cpu_split()
        if not options.client_procs:
            options.client_procs = len(options.client_cpus)
        self.workdir = workdir
        self.log = log
        self.bins = {name: build(name) for name in ("loadgen", "echo")}
        self.key = base64.b64encode(os.urandom(16)).decode()
        raise_fd_limit()

    # -- the matrix ----------------------------------------------------------------------------

    def run(
        self, on_record: Callable[[list[dict[str, Any]]], None] = lambda _records: None
    ) -> list[dict[str, Any]]:
        """Run the matrix; `on_record(records so far)` after each run (to save progress)."""
        # The harness itself sleeps most of the time; keep it off the server's core.
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, self.opt.client_cpus)
        records: list[dict[str, Any]] = []
        for scn in self.scenarios:
            for rep in range(self.opt.repeat):
                for spec in self.servers:
                    skip = self._skip_reason(scn, spec)
                    if skip:
                        if rep == 0:
                            records.append(_record(spec, scn, rep, skipped=skip))
                            self.log(f"[{scn.key}] {spec.name}: skipped ({skip})")
                        continue
                    rec = self.run_one(spec, scn, rep)
                    records.append(rec)
                    self.log(f"[{scn.key}] {spec.name}: {_summary_line(scn, rec)}")
                    on_record(records)
        return records

    def _skip_reason(self, scn: Scenario, spec: ServerSpec) -> str | None:
        if spec.missing():
            return f"not installed: {', '.join(spec.missing())}"
        if scn.idle and not spec.websocket:
            return "no handshake to measure"
        if scn.requires and scn.requires not in spec.features:
            return f"no {scn.requires}"
        if scn.deflate and scn.shape != "default":
            return "client shapes apply to uncompressed scenarios"
        if self.opt.workers > 1 and spec.workers_args is None:
            return "no multi-process mode"
        return None

    def run_one(self, spec: ServerSpec, scn: Scenario, rep: int) -> dict[str, Any]:
        port = free_port(HOST)
        log_path = self.workdir / f"{scn.key}-{spec.name}-{rep}.log"
        argv = spec.argv(HOST, port, self.bins, scn.deflate, self.opt.workers)
        server = ServerProcess(argv, HOST, port, self.opt.server_cpus, log_path)
        rec = _record(spec, scn, rep)
        try:
            server.wait_listening()
            warm = self._loadgen(spec, port, conns=1, depth=1, size=64, text=scn.text,
                                 warmup=0.0, duration=0.2, procs=1)  # fmt: skip
            if _failed(warm):
                raise RuntimeError(f"warm-up echo failed: {warm.get('error')}")
            if scn.idle:
                self._run_idle(spec, scn, server, port, rec)
            else:
                self._run_load(spec, scn, server, port, rec)
            if server.proc.poll() is not None:
                raise RuntimeError(f"the server exited during the run ({server.proc.returncode})")
        except Exception as exc:  # one failed run is reported, the matrix goes on
            rec["ok"] = False
            rec["error"] = f"{type(exc).__name__}: {exc}"
            rec["server_output"] = server.output()
        finally:
            server.stop()
        return rec

    # -- one run -------------------------------------------------------------------------------

    def _loadgen_argv(self, spec: ServerSpec, port: int, **kw: Any) -> list[str]:
        argv = [str(self.bins["loadgen"]), "--host", HOST, "--port", str(port)]
        for name in ("conns", "depth", "size", "warmup", "duration", "procs"):
            if name in kw:
                argv += [f"--{name}", str(kw[name])]
        if kw.get("text"):
            argv.append("--text")
        if kw.get("deflate"):
            argv += ["--deflate", kw["deflate"]]
        if kw.get("shape"):
            argv += SHAPES[kw["shape"]].loadgen_args()
        if spec.websocket:
            argv += ["--key", self.key, "--accept", _accept(self.key)]
        else:
            argv.append("--raw")
        return argv

    def _spawn(self, argv: list[str], **kw: Any) -> subprocess.Popen[str]:
        proc = subprocess.Popen(argv, text=True, stdout=subprocess.PIPE, **kw)
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(proc.pid, self.opt.client_cpus)  # before it forks its children
        return proc

    def _loadgen(self, spec: ServerSpec, port: int, **kw: Any) -> dict[str, Any]:
        argv = self._loadgen_argv(spec, port, **kw)
        timeout = kw["warmup"] + kw["duration"] + 90 + kw["size"] * kw["conns"] / 20e6
        proc = self._spawn(argv, stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise RuntimeError(f"load generator still running after {timeout:.0f} s") from None
        if proc.returncode != 0 or not out.strip():
            raise RuntimeError(f"load generator exited with {proc.returncode}: {err.strip()}")
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result

    def _run_load(
        self, spec: ServerSpec, scn: Scenario, server: ServerProcess, port: int, rec: dict[str, Any]
    ) -> None:
        opt = self.opt
        base_rss = rss_bytes(server.tree())
        samples: list[tuple[float, float]] = []
        stop = threading.Event()

        def sample() -> None:  # server CPU time, to show whether the server was saturated
            while not stop.wait(0.05):
                samples.append((time.monotonic(), cpu_seconds(server.tree())))

        sampler = threading.Thread(target=sample, daemon=True)
        per_process = cpu_by_pid(server.tree())
        t0 = time.monotonic()
        samples.append((t0, cpu_seconds(server.tree())))
        sampler.start()
        try:
            lg = self._loadgen(
                spec,
                port,
                conns=scn.conns,
                depth=scn.depth,
                size=scn.size,
                text=scn.text,
                deflate=scn.deflate,
                shape=scn.shape,
                warmup=opt.warmup,
                duration=opt.duration,
                procs=max(1, min(opt.client_procs, scn.conns)),
            )
        finally:
            stop.set()
            sampler.join()
        samples.append((time.monotonic(), cpu_seconds(server.tree())))
        hwm = hwm_bytes(server.tree())
        # CPU seconds of each server process over the whole load (warm-up included): shows
        # how the work spread over --workers processes
        after = cpu_by_pid(server.tree())
        per_process = {pid: round(c - per_process.get(pid, 0.0), 3) for pid, c in after.items()}
        rec["loadgen"] = lg
        # The generator's own measured window (its clock is time.monotonic's): connecting
        # first can start it well after t0 + warm-up on a busy machine.
        start, end = lg.get("window") or (t0 + opt.warmup, t0 + opt.warmup + opt.duration)
        server_cpu = cpu_share(samples, start, end)
        in_flight = scn.conns * scn.depth * scn.size
        rec["server_stats"] = {
            "rss_base": base_rss,
            "rss_peak": hwm,
            "cpu": server_cpu,
            "cpu_by_process": per_process,
        }
        lat = lg.get("latency_us", {})
        rec["metrics"] = {
            "msgs_per_s": lg["msgs_per_s"],
            "mb_per_s": lg["mb_per_s"],
            "p50_us": lat.get("p50"),
            "p99_us": lat.get("p99"),
            "p99_9_us": lat.get("p99_9"),
            "peak_mem_per_msg": max(0, hwm - base_rss) / in_flight,
            "client_cpu": lg["client_cpu"],
            "server_cpu": server_cpu,
            # Per second of the server's own CPU time: less sensitive than the rates above to
            # other processes taking turns on the server's core.
            "msgs_per_cpu_s": lg["msgs_per_s"] / server_cpu if server_cpu else None,
            "mb_per_cpu_s": lg["mb_per_s"] / server_cpu if server_cpu else None,
        }
        if scn.deflate:
            rec["metrics"]["echo_wire_ratio"] = lg["echo_wire_bytes"] / scn.size
        _check(lg, rec)

    def _run_idle(
        self, spec: ServerSpec, scn: Scenario, server: ServerProcess, port: int, rec: dict[str, Any]
    ) -> None:
        opt = self.opt
        n = opt.idle_conns
        steps = opt.steps()
        base_rss = rss_bytes(server.tree())
        argv = self._loadgen_argv(spec, port, conns=n, size=scn.size, text=scn.text, procs=1)
        argv += ["--idle", ",".join(map(str, steps)), "--hs-concurrency", str(opt.hs_concurrency)]
        if opt.sources:
            argv += ["--sources", str(opt.sources)]
        proc = self._spawn(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None
        watchdog = threading.Timer(120 + n / 100, proc.kill)
        watchdog.start()
        points: list[dict[str, float]] = []
        hs_cpu = 0.0  # server CPU time spent while connections were being opened
        try:
            resumed = cpu_seconds(server.tree())
            for _ in steps:
                line = proc.stdout.readline().split()
                if not line or line[0] != "OPEN":
                    break
                hs_cpu += cpu_seconds(server.tree()) - resumed
                time.sleep(opt.settle)
                opened, secs, cpu = int(line[1]), float(line[2]), float(line[3])
                rss = rss_bytes(server.tree())
                points.append({"conns": opened, "rss": rss, "seconds": secs, "client_cpu": cpu})
                resumed = cpu_seconds(server.tree())
                proc.stdin.write("\n")
                proc.stdin.flush()
            out, err = proc.communicate()
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        if not out.strip():
            raise RuntimeError(f"load generator exited with {proc.returncode}: {err.strip()}")
        lg = json.loads(out.strip().splitlines()[-1])
        rec["loadgen"] = lg
        rec["idle_points"] = points
        rec["server_stats"] = {"rss_base": base_rss, "rss_peak": hwm_bytes(server.tree())}
        last = points[-1] if points else {"conns": 0, "rss": base_rss}
        rec["metrics"] = {
            "handshakes_per_s": lg["opened"] / lg["handshake_seconds"]
            if lg["handshake_seconds"]
            else None,
            "rss_per_conn_kib": (last["rss"] - base_rss) / last["conns"] / 1024
            if last["conns"]
            else None,
            "handshakes_per_cpu_s": lg["opened"] / hs_cpu if hs_cpu else None,
            "client_cpu": max((p["client_cpu"] for p in points), default=None),
            "server_cpu": hs_cpu / lg["handshake_seconds"] if lg["handshake_seconds"] else None,
            "handshake_p99_us": lg.get("handshake_us", {}).get("p99"),
        }
        _check(lg, rec, expect=n)


def _at(samples: list[tuple[float, float]], t: float) -> float:
    """CPU time at `t`, interpolated between the samples around it."""
    for (t1, c1), (t2, c2) in itertools.pairwise(samples):
        if t1 <= t <= t2:
            return c1 + (c2 - c1) * (t - t1) / (t2 - t1) if t2 > t1 else c1
    return samples[-1][1]


def cpu_share(samples: list[tuple[float, float]], start: float, end: float) -> float | None:
    """The server's CPU seconds per second over [start, end], from (time, CPU seconds)
    samples in time order: interpolated at both ends, so a sampler thread that a loaded
    machine ran late (few or no samples inside the window) still gives the figure as long
    as samples lie on both sides. None when they do not, or the window is empty."""
    if end <= start or len(samples) < 2 or samples[0][0] > start or samples[-1][0] < end:
        return None
    return (_at(samples, end) - _at(samples, start)) / (end - start)


def _record(
    spec: ServerSpec, scn: Scenario, rep: int, skipped: str | None = None
) -> dict[str, Any]:
    return {
        "server": spec.name,
        "scenario": scn.key,
        "repeat": rep,
        "ok": skipped is None,
        "skipped": skipped,
        "error": None,
        "metrics": {},
    }


def _failed(lg: dict[str, Any]) -> bool:
    return bool(lg.get("errors") or lg.get("crashed") or not lg.get("verified"))


def _check(lg: dict[str, Any], rec: dict[str, Any], expect: int | None = None) -> None:
    """Every echo verified, none failed: else the run counts as failed (figures kept)."""
    if _failed(lg):
        rec["ok"] = False
        rec["error"] = f"{lg.get('errors')} connection(s) failed: {lg.get('error') or 'no echo'}"
    elif lg.get("deflate") and not lg.get("compressed_echoes"):
        # negotiated (the generator checks the handshake) but never used: not a compressed run
        rec["ok"] = False
        rec["error"] = f"permessage-deflate agreed ({lg.get('extensions')}) but no echo compressed"
    elif expect is not None and lg.get("verified") != expect:
        rec["ok"] = False
        rec["error"] = f"{lg.get('verified')} of {expect} idle connections echoed"


def _summary_line(scn: Scenario, rec: dict[str, Any]) -> str:
    if not rec["ok"]:
        return f"FAILED: {rec['error']}"
    m = rec["metrics"]
    parts = []
    for metric in scn.metrics:
        value = m.get(metric.key)
        parts.append(f"{metric.fmt.format(value) if value is not None else '-'} {metric.label}")
    cpu = m.get("client_cpu")
    scpu = m.get("server_cpu")
    extra = f" (client cpu {cpu:.0%}" if cpu is not None else " ("
    extra += f", server cpu {scpu:.0%})" if scpu is not None else ")"
    return ", ".join(parts) + extra


def medians(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """scenario -> server -> metric -> median over the successful repeats."""
    values: dict[str, dict[str, dict[str, list[float]]]] = {}
    for rec in records:
        if not rec["ok"]:
            continue
        per = values.setdefault(rec["scenario"], {}).setdefault(rec["server"], {})
        for k, v in rec["metrics"].items():
            if v is not None:
                per.setdefault(k, []).append(v)
    return {
        s: {srv: {k: statistics.median(v) for k, v in m.items()} for srv, m in by.items()}
        for s, by in values.items()
    }
