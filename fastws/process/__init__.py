"""The pre-fork process model: a master (arbiter) supervising uvloop worker processes.

Supervision only (arbiter, worker) and the listening sockets it hands to its workers
(sockets, also used by a server in one process); the counters and the scoreboard they travel
in are `fastws.stats`. Imported by `fastws.launch` when a server starts, never by the I/O
layer.
"""
