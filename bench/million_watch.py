"""Watch the scoreboard page of a running `bench.million` server from outside and log what
changes: a slot's pid or state (a live worker's state read as FREE for a moment is how issue
21's late kills were found), a heartbeat going backwards.

    python -m bench.million_watch --workers 63 --out watch.log   # then start bench.million

It reads the master's shared mapping through /proc/PID/mem (root, or the same user with
ptrace allowed) every 0.2 s and never writes to it; stop it by its PID.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import TextIO

from fastws.stats import scoreboard as sb


def find_master() -> int | None:
    """The pid of the `fastws serve bench.million_app:...` process whose parent is not one."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
            if b"bench.million_app:" not in cmd or b"serve" not in cmd:
                continue
            ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            if b"bench.million_app:" not in Path(f"/proc/{ppid}/cmdline").read_bytes():
                return int(entry.name)
        except OSError:
            continue
    return None


def find_page(master: int, size: int) -> int | None:
    """The address of the master's shared anonymous mapping of the scoreboard's size."""
    pages = -(-size // 4096) * 4096
    for line in Path(f"/proc/{master}/maps").read_text().splitlines():
        fields = line.split()
        low, high = (int(x, 16) for x in fields[0].split("-"))
        if "s" in fields[1] and "/dev/zero" in line and high - low == pages:
            return low
    return None


def watch(master: int, address: int, size: int, slots: int, out: TextIO) -> None:
    def log(message: str) -> None:
        out.write(f"{time.strftime('%H:%M:%S')} {time.monotonic():.3f} {message}\n")

    log(f"master {master}, scoreboard at {address:#x}, {size} bytes, {slots} slots")
    last: dict[int, tuple[int, int, float]] = {}
    with open(f"/proc/{master}/mem", "rb", buffering=0) as mem:
        while True:
            try:
                mem.seek(address)
                page = mem.read(size)
            except OSError:
                page = b""
            if len(page) < size:
                log("master gone")
                return
            now = time.monotonic()
            for slot in range(1, slots + 1):
                pid, state, listener, _, beat = sb._HEAD.unpack_from(page, slot * sb._SLOT_SIZE)
                previous = last.get(slot)
                if previous is not None:
                    was_pid, was_state, was_beat = previous
                    if (pid, state) != (was_pid, was_state):
                        alive = pid > 0 and os.path.exists(f"/proc/{pid}")
                        log(
                            f"slot {slot}: pid {was_pid}->{pid} state {was_state}->{state}"
                            f" listener {listener} beat age {now - beat:.1f} alive {alive}"
                        )
                    elif beat < was_beat:
                        log(f"slot {slot} pid {pid}: heartbeat went back {was_beat} -> {beat}")
                if state != sb.FREE or previous is not None:
                    last[slot] = (pid, state, beat)
            time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, required=True, help="the server's --workers")
    parser.add_argument("--out", required=True, help="log file (appended to)")
    args = parser.parse_args()
    slots = max(64, 4 * args.workers)  # as the master sizes it (process/arbiter.py)
    size = (slots + 1) * sb._SLOT_SIZE + slots * sb._COUNTERS.size
    master = address = None
    while master is None or address is None:
        time.sleep(0.5)
        master = find_master()
        if master is not None:
            address = find_page(master, size)
    with open(args.out, "a", buffering=1) as out:
        watch(master, address, size, slots, out)


if __name__ == "__main__":
    main()
