"""HTTP hello world of an ASGI app: fastws against uvicorn (and the other ASGI servers).

    python -m bench.asgi_http [--servers fastws-asgi,uvicorn-websockets] [--rounds 3]
                              [--duration 5] [--connections 50] [--pipeline 1]

Each server runs bench/servers/starlette_echo.py's app (the same command as in the
WebSocket matrix, one worker, pinned to the server CPU); wrk (`apt-get install wrk`, pinned
to the other CPUs) requests GET /hello over kept-alive connections. Servers alternate within
each round; the table gives the median requests/s and server CPU-s per 1,000 requests.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .procs import ServerProcess, cpu_seconds, cpu_split, free_port
from .servers import SERVERS

HOST = "127.0.0.1"

#: wrk's Lua script for pipelined requests (`--pipeline N`: N requests per write)
_PIPELINE_LUA = """
init = function(args)
  local r = {}
  for i = 1, %d do r[i] = wrk.format(nil, "/hello") end
  req = table.concat(r)
end
request = function() return req end
"""


def run_wrk(port: int, duration: float, connections: int, pipeline: int, cpus: set[int]) -> float:
    """Requests per second that wrk measured."""
    argv = [
        "wrk",
        "-t",
        str(len(cpus)),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(duration))}s",
    ]
    script = None
    if pipeline > 1:
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)  # noqa: SIM115
        script.write(_PIPELINE_LUA % pipeline)
        script.close()
        argv += ["-s", script.name]
    argv.append(f"http://{HOST}:{port}/hello")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    os.sched_setaffinity(proc.pid, cpus)
    out, _ = proc.communicate(timeout=duration + 60)
    if script is not None:
        os.unlink(script.name)
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)
    if found is None or errors is not None:
        raise RuntimeError(f"wrk failed:\n{out}")
    return float(found[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="fastws-asgi,uvicorn-websockets")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--pipeline", type=int, default=1)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 2
    server_cpus, client_cpus = cpu_split()
    names = args.servers.split(",")
    rates: dict[str, list[float]] = {name: [] for name in names}
    cpu_per_k: dict[str, list[float]] = {name: [] for name in names}
    logs = Path(tempfile.mkdtemp(prefix="fastws-asgi-http-"))
    for round_ in range(args.rounds):
        for name in names:
            port = free_port()
            spec = SERVERS[name]
            server = ServerProcess(
                spec.argv(HOST, port, {}, None), HOST, port, server_cpus, logs / f"{name}.log"
            )
            try:
                server.wait_listening()
                time.sleep(0.5)
                run_wrk(port, 1.0, args.connections, args.pipeline, client_cpus)  # warm-up
                before = cpu_seconds(server.tree())
                rate = run_wrk(port, args.duration, args.connections, args.pipeline, client_cpus)
                used = cpu_seconds(server.tree()) - before
            finally:
                server.stop()
            rates[name].append(rate)
            cpu_per_k[name].append(used / (rate * args.duration) * 1e6)  # CPU-ms per 1,000
            print(f"round {round_ + 1} {name}: {rate:,.0f} requests/s", file=sys.stderr)
    base = statistics.median(rates[names[-1]])
    print(
        f"| server | requests/s (median of {args.rounds}) | vs {names[-1]} |"
        " server CPU-ms per 1,000 requests |"
    )
    print("|---|---|---|---|")
    for name in names:
        rate = statistics.median(rates[name])
        cost = statistics.median(cpu_per_k[name])
        print(f"| {name} | {rate:,.0f} | {rate / base:.2f}x | {cost:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
