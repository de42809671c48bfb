"""Hypercorn settings for the benchmark (python:bench.servers.hypercorn_conf): as for the
other servers, no message size limit the matrix would hit, backlog 2048, quiet logs."""

backlog = 2048
websocket_max_message_size = 64 * 1024 * 1024
worker_class = "uvloop"
workers = 1
loglevel = "WARNING"
