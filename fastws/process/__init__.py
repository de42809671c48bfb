"""The pre-fork process model: a master (arbiter) supervising uvloop worker processes.

Importing this package is cheap (the I/O layer imports `counters` on every connection);
the arbiter and the worker are imported by the command line only when it runs them.
"""
