"""What every peer server of tests/interop does, whatever its library (tests/interop/README.md).

Each peer serves, on 127.0.0.1, one URL per compression setting (PATHS) and prints them as one
JSON line once it is listening; afterwards one JSON line per closed connection.
"""

from __future__ import annotations

import json
import sys
from typing import Any

#: Size of each fragment a peer sends for "!fragments COUNT" (WebSocket-Node's threshold).
FRAGMENT = 16 * 1024
#: Largest message a peer accepts (the tests send up to 16 MiB).
MAX_MESSAGE = 64 * 1024 * 1024 + 1024
#: Compression settings: "off", or which side may keep its LZ77 window between messages
#: (RFC 7692 7.1.1: server_no_context_takeover / client_no_context_takeover).
TAKEOVER = {
    "none": (False, False),
    "server": (True, False),
    "client": (False, True),
    "both": (True, True),
}
PATHS = ["off", *TAKEOVER]


def fragments(count: int) -> list[bytes]:
    """The parts of "!fragments COUNT": byte i of the message is i % 251."""
    whole = bytes(i % 251 for i in range(251)) * (count * FRAGMENT // 251 + 1)
    return [whole[n * FRAGMENT : (n + 1) * FRAGMENT] for n in range(count)]


def command(message: str) -> tuple[str, list[str]] | None:
    """("!close", ["4001", "done"]) for a command message, None for one to echo."""
    if not message.startswith("!"):
        return None
    name, *args = message.split(" ")
    return name, args


def log(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()
