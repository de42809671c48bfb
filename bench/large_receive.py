"""What receiving one large message costs the protocol core, by how the client framed it.

    python -m bench.large_receive                         # 16 MiB: one frame, 131,000, 16 KiB
    python -m bench.large_receive --size 1MiB --frag 0,131000,4096 --rounds 20
    python -m bench.large_receive --asgi --size 1MiB --conns 4   # as fastws.asgi delivers (d)

No sockets: a `Connection` with the server's memory budget and region cache is fed the
masked frames as uvloop would feed a worker (into `payload_target()` when it offers a
destination, else `receive_data`), in reads of `--read` bytes, and each message is released
as the built-in echo does. Prints the median and minimum time per message for each fragment
size (0: one frame). This is the server-side part of `python -m bench run --client-shape`
(a Chromium-shaped client sends 131,000-byte fragments), without the loopback and the
generator: run it before and after a change to fastws/buffers.py or the assembly of
fragmented messages (`PYTHONPATH=/tmp/before python -m bench.large_receive`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Iterator

from fastws.buffers import Budget, RegionCache
from fastws.config import parse_size
from fastws.protocol.connection import Connection

try:  # the server's assembly of large messages (since issue 16)
    from fastws.assembler import RegionAssembler
except ImportError:  # an older tree (A/B through PYTHONPATH): the core took the budget
    RegionAssembler = None  # type: ignore[assignment,misc]


try:  # fastws.asgi's assembly (received into the bytes delivered)
    from fastws.assembler import BytesAssembler
except ImportError:  # an older tree
    BytesAssembler = None  # type: ignore[assignment,misc]


def server_connection(budget: Budget, kind: str = "region") -> Connection:
    """A Connection that assembles large messages as a server worker does (`kind` "bytes":
    as for an ASGI application, whose messages are delivered as bytes)."""
    if RegionAssembler is None:
        return Connection(max_message_size=64 << 20, budget=budget)  # type: ignore[call-arg]
    if kind == "bytes":
        if BytesAssembler is None:
            raise SystemExit("this tree has no BytesAssembler")
        return Connection(max_message_size=64 << 20, assembler=BytesAssembler(budget))
    return Connection(max_message_size=64 << 20, assembler=RegionAssembler(budget))


def deliver(message: object, asgi: bool) -> None:
    """Let go of a received message as the built-in echo does (release), or with `asgi` as
    fastws.asgi's receive() does: bytes taken where they were received (BytesBuffer), or
    copied out of the message's region, which goes back to the cache."""
    if type(message) is bytes:
        return
    with message:  # type: ignore[attr-defined]
        buffer = message.buffer  # type: ignore[attr-defined]
        if asgi:
            data = buffer.take() if hasattr(buffer, "take") else message.tobytes()  # type: ignore[attr-defined]
            assert len(data) == len(message)  # type: ignore[arg-type]


ZERO_KEY = b"\0\0\0\0"  # a legal masking key that leaves the payload as it is


def frames(payload: bytes, frag: int) -> bytes:
    """`payload` as one masked binary message in frames of `frag` bytes (0: one frame)."""
    out = bytearray()
    per = frag or len(payload)
    for off in range(0, len(payload), per):
        k = min(per, len(payload) - off)
        b0 = (0x80 if off + k == len(payload) else 0) | (0 if off else 2)
        if k < 126:
            head = bytes([b0, 0x80 | k])
        elif k < 65536:
            head = bytes([b0, 0x80 | 126]) + k.to_bytes(2, "big")
        else:
            head = bytes([b0, 0x80 | 127]) + k.to_bytes(8, "big")
        out += head + ZERO_KEY + payload[off : off + k]
    return bytes(out)


def reads(conn: Connection, wire: bytes, read: int) -> Iterator[object]:
    """Feed one message's bytes, one read per step (into `payload_target()` when it offers a
    destination, else `receive_data`); the last step yields the message."""
    view = memoryview(wire)
    pos = 0
    while pos < len(wire):
        target = conn.payload_target()
        if target is None:
            k = min(read, len(wire) - pos)
            conn.receive_data(view[pos : pos + k])
        else:
            k = min(len(target), read, len(wire) - pos)
            target[:k] = view[pos : pos + k]
            target.release()
            conn.payload_written(k)
        pos += k
        if pos < len(wire):
            yield None
    *_, message = conn.events
    conn.events.clear()
    yield message


def receive(conn: Connection, wire: bytes, read: int) -> object:
    """Feed one message's bytes; return the message (released by the caller)."""
    *_, message = reads(conn, wire, read)
    return message


def receive_all(conns: list[Connection], wire: bytes, read: int, asgi: bool) -> None:
    """One message on each connection, their reads interleaved (d: 4 connections at once);
    every message let go of once all are complete (a server holds each until it is sent)."""
    feeds = [reads(conn, wire, read) for conn in conns]
    done: list[object] = []
    while feeds:
        for feed in list(feeds):
            message = next(feed)
            if message is not None:
                done.append(message)
                feeds.remove(feed)
    for message in done:
        deliver(message, asgi)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=parse_size, default=16 << 20)
    parser.add_argument("--frag", default="0,131000,16384", help="fragment sizes, 0: one frame")
    parser.add_argument("--read", type=int, default=131_000, help="bytes per read")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--conns", type=int, default=1, help="connections, reads interleaved")
    parser.add_argument(
        "--asgi",
        action="store_true",
        help="assemble and deliver bytes as fastws.asgi does (BytesAssembler, take or copy)",
    )
    args = parser.parse_args(argv)
    payload = os.urandom(args.size)
    budget = Budget(1 << 30, RegionCache(64 << 20))  # the server's defaults
    kind = "bytes" if args.asgi else "region"
    if args.asgi:  # what a worker serving an ASGI application tells malloc (buffer_cache)
        from fastws.asgi.app import _keep_malloc_memory

        _keep_malloc_memory(64 << 20)
    for frag in (int(f) for f in args.frag.split(",")):
        wire = frames(payload, frag)
        conns = [server_connection(budget, kind) for _ in range(args.conns)]
        times = []
        for _ in range(args.rounds + 2):
            start = time.perf_counter()
            receive_all(conns, wire, args.read, args.asgi)
            times.append((time.perf_counter() - start) / args.conns)
        times = times[2:]  # the first messages map the memory the others reuse
        label = f"{frag:,}-byte frames" if frag else "one frame"
        print(
            f"{label:>20}: {statistics.median(times) * 1e3:7.2f} ms per message"
            f" (min {min(times) * 1e3:.2f}), {args.size / statistics.median(times) / 1e6:,.0f} MB/s"
        )


if __name__ == "__main__":
    main()
