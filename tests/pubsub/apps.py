"""Handler apps for the channel tests, loaded by the server process as ``tests.pubsub.apps:NAME``.

Written against the public API (README, "Broadcast and channels"). ``rooms`` first sends
``{"pid": <worker pid>}`` (so a test knows which worker holds each connection), then obeys
JSON text commands and answers each with ``{"ok": <command>}`` once it is done:

- ``{"sub": ROOM}`` / ``{"unsub": ROOM}``: ``ws.subscribe`` / ``ws.unsubscribe``;
- ``{"pub": ROOM, "text": T, "count": N}``: publishes ``f"{T}{i}"`` for i in range(N), in
  order, with ``fastws.publish`` (module helper) on even i and ``ws.server.publish`` on odd i;
- ``{"pub": ROOM, "binary": SIZE, "count": N}``: N binary messages of SIZE bytes, every byte of
  message i equal to i % 256;
- ``{"channels": true}``: answers ``{"channels": sorted(ws.channels)}``.

Channel messages reach the client as ordinary messages, between command answers.

A connection to ``/sub/ROOM`` is a plain subscriber instead: subscribed to ROOM before its
``{"pid": ...}`` message, then it only reads (and drops) what the client sends.
"""

from __future__ import annotations

import json
import os
from typing import Any

import fastws


async def rooms(ws: Any) -> None:
    path = ws.request.path
    if path.startswith("/sub/"):
        ws.subscribe(path[len("/sub/") :])
        await ws.send(json.dumps({"pid": os.getpid()}))
        async for _ in ws:
            pass
        return
    await ws.send(json.dumps({"pid": os.getpid()}))
    async for message in ws:
        if not isinstance(message, str):
            continue
        command = json.loads(message)
        if "sub" in command:
            ws.subscribe(command["sub"])
        elif "unsub" in command:
            ws.unsubscribe(command["unsub"])
        elif "pub" in command:
            room = command["pub"]
            for i in range(command.get("count", 1)):
                if "binary" in command:
                    data: str | bytes = bytes([i % 256]) * command["binary"]
                else:
                    data = f"{command['text']}{i}"
                if i % 2:
                    await ws.server.publish(room, data)
                else:
                    await fastws.publish(room, data)
        elif "channels" in command:
            await ws.send(json.dumps({"channels": sorted(ws.channels)}))
            continue
        await ws.send(json.dumps({"ok": command}))
