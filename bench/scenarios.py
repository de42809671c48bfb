"""The scenario matrix of the end-to-end benchmark, and the figures each one reports."""

from __future__ import annotations

from dataclasses import dataclass

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool
    fmt: str = "{:,.0f}"

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"


MSGS = Metric("msgs_per_s", "msgs/s", True)
P50 = Metric("p50_us", "p50 µs", False, "{:,.0f}")
P99 = Metric("p99_us", "p99 µs", False, "{:,.0f}")
P999 = Metric("p99_9_us", "p99.9 µs", False, "{:,.0f}")
MBS = Metric("mb_per_s", "MB/s", True, "{:,.0f}")
PEAK = Metric("peak_mem_per_msg", "peak RSS / in-flight bytes", False, "{:.2f}")
MSGS_CPU = Metric("msgs_per_cpu_s", "msgs per server CPU-s", True)
MBS_CPU = Metric("mb_per_cpu_s", "MB per server CPU-s", True)
HS = Metric("handshakes_per_s", "handshakes/s", True)
HS_CPU = Metric("handshakes_per_cpu_s", "handshakes per server CPU-s", True)
RSS_CONN = Metric("rss_per_conn_kib", "RSS KiB/conn", False, "{:.1f}")
WIRE = Metric("echo_wire_ratio", "echo bytes on the wire / payload", False, "{:.2f}")


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    metrics: tuple[Metric, ...]
    size: int = 64
    text: bool = False
    conns: int = 1
    depth: int = 1
    idle: bool = False  # scenario f: open connections, hold them idle, measure
    #: a server feature the scenario needs (see ServerSpec.features); None: every server
    requires: str | None = None
    #: permessage-deflate offer of the load generator (its --deflate): "no-takeover" or
    #: "server-takeover"; None: no compression
    deflate: str | None = None

    def describe(self) -> str:
        return f"{self.key}) {self.title}"


def _compressed(key: str, takeover: str, deflate: str, requires: str) -> Scenario:
    """1 KiB JSON text deflated by the client without context takeover; the server asked for
    none either (g: what browsers' messages cost a server that keeps no zlib state per
    connection, fastws' default) or allowed to keep its own context (h)."""
    return Scenario(
        key,
        f"1 KiB JSON text, permessage-deflate, {takeover}, 10 conns x 10 in flight",
        (MSGS, MSGS_CPU, P50, P99, WIRE),
        size=KiB,
        text=True,
        conns=10,
        depth=10,
        requires=requires,
        deflate=deflate,
    )


SCENARIOS: dict[str, Scenario] = {
    s.key: s
    for s in (
        Scenario(
            "a", "64 B text, 1 conn, 1 in flight", (MSGS, MSGS_CPU, P50, P99, P999), text=True
        ),
        Scenario(
            "b", "64 B binary, 100 conns x 1 in flight", (MSGS, MSGS_CPU, P50, P99), conns=100
        ),
        Scenario(
            "c",
            "64 B binary, 10 conns x 100 in flight",
            (MSGS, MSGS_CPU, P50, P99),
            conns=10,
            depth=100,
        ),
        Scenario(
            "d", "1 MiB binary, 4 conns x 1 in flight", (MBS, MBS_CPU, PEAK), size=MiB, conns=4
        ),
        Scenario("e", "16 MiB binary, 1 conn x 1 in flight", (MBS, MBS_CPU, PEAK), size=16 * MiB),
        Scenario("f", "idle connections", (HS, HS_CPU, RSS_CONN), idle=True),
        _compressed("g", "no context takeover", "no-takeover", "server_no_context_takeover"),
        _compressed("h", "server context takeover", "server-takeover", "compression"),
    )
}
