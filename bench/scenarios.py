"""The scenario matrix of the end-to-end benchmark, and the figures each one reports."""

from __future__ import annotations

from dataclasses import dataclass, replace

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
    #: how the client frames, writes and reads (a key of SHAPES)
    shape: str = "default"

    def describe(self) -> str:
        return f"{self.key}) {self.title}"


@dataclass(frozen=True)
class ClientShape:
    """How the load generator frames, writes and reads a message (its --frag,
    --write-chunk and --read-size; 0: one frame / everything at once)."""

    name: str
    description: str
    frag: int = 0
    write_chunk: int = 0
    read_size: int = 256 * KiB

    def loadgen_args(self) -> list[str]:
        return [
            "--frag", str(self.frag), "--write-chunk", str(self.write_chunk),
            "--read-size", str(self.read_size),
        ]  # fmt: skip


#: Client shapes (`python -m bench run --client-shape a,b,...`). Browsers and ordinary clients
#: do not all send a 16 MiB message as bench's generator does by default.
SHAPES: dict[str, ClientShape] = {
    s.name: s
    for s in (
        ClientShape(
            "default",
            "one frame per message; writev of all queued bytes (the kernel takes what fits);"
            " 256 KiB reads",
        ),
        ClientShape(
            "one-frame-64k",
            "one frame per message written in 64 KiB write()s; 64 KiB reads (a plain C client"
            " with a 64 KiB buffer)",
            write_chunk=64 * KiB,
            read_size=64 * KiB,
        ),
        ClientShape(
            "small-reads",
            "one frame per message, written whole; echoes read 4 KiB at a time",
            read_size=4 * KiB,
        ),
        ClientShape(
            "chromium",
            "as Chromium 156 sends an ArrayBuffer: frames of 131,000 payload bytes (BINARY, then"
            " CONTINUATIONs), each under its own mask, one write() per frame; 131,000-byte reads",
            frag=131_000,
            write_chunk=131_000 + 14,
            read_size=131_000,
        ),
        ClientShape(
            "frag-16k",
            "frames of 16 KiB (WebSocket-Node's clients' default), one write() per frame;"
            " 16 KiB reads",
            frag=16 * KiB,
            write_chunk=16 * KiB + 8,
            read_size=16 * KiB,
        ),
    )
}


def with_shape(scn: Scenario, shape: str) -> Scenario:
    """`scn` driven by the client shape `shape`: key "e@chromium" (plain "e" for the default)."""
    if shape == "default":
        return scn
    return replace(scn, key=f"{scn.key}@{shape}", title=f"{scn.title}, client {shape}", shape=shape)


def scenario(key: str) -> Scenario:
    """The scenario of a key: "e", or "e@chromium" (a scenario under a client shape)."""
    base, _, shape = key.partition("@")
    return with_shape(SCENARIOS[base], shape or "default")


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
        # Not in the default matrix: several large messages at once (i@chromium: what a
        # worker's heap holds while they grow in their bytes, fastws.assembler.BytesAssembler)
        Scenario(
            "i",
            "16 MiB binary, 4 conns x 1 in flight",
            (MBS, MBS_CPU, PEAK),
            size=16 * MiB,
            conns=4,
        ),
    )
}
