"""The pre-fork process model: a master (arbiter) supervising uvloop worker processes.

Supervision only (arbiter, worker, sockets); the counters and the scoreboard they travel in
are `fastws.stats`. Imported only when a master is run (by the command line or `fastws.run`).
"""
