"""Show a running fastws server's workers and counters as a table (from its GET /metrics).

A row per worker slot (the `worker` label of /metrics), then the server's total: the sum of
the slots.

Asks whichever worker accepts the connection; every worker answers for the whole server.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys

from .config import Config, ConfigError

__all__ = ["add_arguments", "fetch", "main", "parse", "table"]

_LINE = re.compile(r"^([a-z_]+)(?:\{([^}]*)\})? (\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')

COLUMNS = (
    ("connections_open", "conns"),
    ("handshakes_total", "handshakes"),
    ("messages_in_total", "msgs in"),
    ("messages_out_total", "msgs out"),
    ("bytes_in_total", "bytes in"),
    ("bytes_out_total", "bytes out"),
    ("busy_total", "busy"),
    ("errors_total", "errors"),
    ("message_memory_bytes", "msg mem"),
    ("write_buffer_bytes", "write buf"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="the server's host (default: $FASTWS_HOST or 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, help="the server's port (default: $FASTWS_PORT or 8000)"
    )
    parser.add_argument("--uds", help="the server's Unix socket path (default: $FASTWS_UDS)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default: 5)")


def fetch(host: str, port: int, uds: str | None = None, timeout: float = 5.0) -> str:
    """GET /metrics over a plain socket (no HTTP library needed for one request)."""
    if uds is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(uds)
    else:
        sock = socket.create_connection((host, port), timeout=timeout)
    with sock:
        sock.sendall(f"GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status + b" ":
        raise OSError(f"GET /metrics answered {status.decode(errors='replace')!r}")
    return body.decode()


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text -> {(name, sorted labels): value}."""
    samples = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match:
            name, labels, value = match.groups()
            key = tuple(sorted(_LABEL.findall(labels or "")))
            samples[(name.removeprefix("fastws_"), key)] = float(value)
    return samples


def table(text: str) -> str:
    """One row per worker slot (its process, or both during a reload), then the total."""
    samples = parse(text)
    processes: dict[str, list[dict[str, str]]] = {}
    for name, labels in samples:
        if name == "worker_info":
            info = dict(labels)
            processes.setdefault(info["worker"], []).append(info)
    header = ["worker", "pid", "state", "uptime", *(title for _, title in COLUMNS)]
    rows = []
    for slot in sorted(processes, key=int):
        procs = sorted(processes[slot], key=lambda p: int(p["pid"]))
        label = (("worker", slot),)
        uptime = samples.get(("worker_uptime_seconds", label), 0.0)
        rows.append(
            [
                slot,
                ",".join(p["pid"] for p in procs),
                ",".join(p["state"] for p in procs),
                f"{uptime:.0f}s",
            ]
            + [f"{samples.get((name, label), 0):.0f}" for name, _ in COLUMNS]
        )

    def total(metric: str) -> float:
        return sum(v for (name, _), v in samples.items() if name == metric)

    rows.append(["total", "", "", ""] + [f"{total(n):.0f}" for n, _ in COLUMNS])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    out = []
    for r in [header, *rows]:
        out.append(
            "  ".join(
                c.rjust(w) if i > 2 else c.ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            ).rstrip()
        )
    closes: dict[str, float] = {}
    for (name, labels), v in samples.items():
        if name == "closes_total":
            code = dict(labels)["code"]
            closes[code] = closes.get(code, 0.0) + v
    used = ", ".join(f"{code}: {v:.0f}" for code, v in closes.items() if v)
    out.append(f"close codes: {used or 'none yet'}")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fastws status", description=__doc__, allow_abbrev=False)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        env = Config.load(environ=os.environ)
    except ConfigError as exc:
        print(f"fastws status: error: {exc}", file=sys.stderr)
        return 2
    host = args.host or env.host
    port = args.port if args.port is not None else env.port
    uds = args.uds or env.uds
    try:
        text = fetch(host, port, uds, args.timeout)
    except OSError as exc:
        where = uds if uds else f"{host}:{port}"
        print(f"fastws status: cannot read metrics from {where}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(table(text))
    return 0
