"""Statistics: this process's counters, the scoreboard page they are shared through, and the
/metrics and /healthz renderings of it.

Below the I/O layer: the WebSocket object, broadcast and the channels increment `counters`;
the server renders `metrics`; the supervisor (`fastws.process`) owns the `scoreboard` page.
Nothing here imports asyncio, sockets or the process model.
"""
