"""Echo ping-pong: every user holds one connection and sends a small text message at a steady
rate; the round trip is measured from the id the message carries (`WS echo`).

    locust -f loadtests/echo.py --host ws://127.0.0.1:8000/ --headless -u 100 -r 50 -t 30s
    # options: --ws-rate (messages/s per user, 0 = back to back), --ws-size (bytes),
    #          --ws-compression deflate
"""

from __future__ import annotations

import random
from typing import Any

from locust import events, task

from fastws.locust import WebSocketUser


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument(
        "--ws-rate", type=float, default=1.0, help="echo messages per second per user (0: no wait)"
    )
    parser.add_argument("--ws-size", type=int, default=32, help="echo message size in bytes")
    parser.add_argument(
        "--ws-compression",
        choices=["off", "deflate"],
        default="off",
        help="offer permessage-deflate",
    )


class EchoUser(WebSocketUser):
    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.rate = options.ws_rate if options is not None else 1.0
        size = options.ws_size if options is not None else 32
        self.message = "x" * size
        if options is not None and options.ws_compression == "deflate":
            self.compression = "deflate"
        super().on_start()

    def wait_time(self) -> float:
        if self.rate <= 0:
            return 0.0
        # Poisson arrivals at the mean rate, as independent users make them. Not locust's
        # constant_throughput: locust starts users in batches (spawn rate users at once, once
        # a second) and constant pacing keeps each batch in lockstep, so messages arrive in
        # bursts; a 1,000-user run measured echo p50 20-50 ms that way instead of 0.4-1 ms.
        return random.expovariate(self.rate)

    @task
    def echo(self) -> None:
        self.request(self.message, "echo")
