"""Handler apps for the Redis end-to-end tests (``tests.pubsub.redis_apps:NAME``).

Public API only. ``relay`` first sends ``{"pid": <worker pid>}``, then answers each JSON text
command once it is done:

- ``{"sub": ROOM}``: ``ws.subscribe(ROOM)``, answers ``{"ok": "sub"}``;
- ``{"pub": ROOM, "text": T, "count": N}``: publishes ``f"{T}{i}"`` for i in range(N) in
  order with ``ws.server.publish``, counting the ones that raised ``fastws.PublishError``
  instead of failing; answers ``{"published": P, "failed": F}``;
- ``{"echo": X}``: answers ``{"echo": X}`` (is the worker still serving?).

Channel messages reach the client as ordinary text messages, between the answers.
"""

from __future__ import annotations

import json
import os
from typing import Any

from fastws.pubsub.broker import PublishError


async def relay(ws: Any) -> None:
    await ws.send(json.dumps({"pid": os.getpid()}))
    async for message in ws:
        command = json.loads(message)
        if "sub" in command:
            ws.subscribe(command["sub"])
            await ws.send(json.dumps({"ok": "sub"}))
        elif "pub" in command:
            published = failed = 0
            for i in range(command["count"]):
                try:
                    await ws.server.publish(command["pub"], f"{command['text']}{i}")
                except PublishError:
                    failed += 1
                else:
                    published += 1
            await ws.send(json.dumps({"published": published, "failed": failed}))
        else:
            await ws.send(json.dumps({"echo": command["echo"]}))
