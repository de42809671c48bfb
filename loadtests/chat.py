"""Chat-like: mostly idle connections. Each user pings every --ws-ping-interval seconds
(`WS ping`) and now and then sends a short message (`WS say`, about every
--ws-say-interval seconds, randomised); whatever else the server pushes is `WS recv`.

    locust -f loadtests/chat.py --host ws://127.0.0.1:8000/ --headless -u 1000 -r 200 -t 60s
"""

from __future__ import annotations

import random
import time
from typing import Any

from locust import events, task

from fastws.locust import WebSocketUser


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument(
        "--ws-ping-interval", type=float, default=15.0, help="seconds between pings"
    )
    parser.add_argument(
        "--ws-say-interval", type=float, default=30.0, help="mean seconds between chat messages"
    )


class ChatUser(WebSocketUser):
    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.ping_interval = options.ws_ping_interval if options is not None else 15.0
        self.say_interval = options.ws_say_interval if options is not None else 30.0
        # Spread the first ping over the interval so the users do not ping in lockstep.
        self.next_ping = time.monotonic() + random.uniform(0, self.ping_interval)
        self.next_say = time.monotonic() + random.expovariate(1 / self.say_interval)
        super().on_start()

    def wait_time(self) -> float:
        return max(0.0, min(self.next_ping, self.next_say) - time.monotonic())

    @task
    def tick(self) -> None:
        now = time.monotonic()
        if now >= self.next_ping:
            self.next_ping = now + self.ping_interval
            self.ping()
        if now >= self.next_say:
            self.next_say = now + random.expovariate(1 / self.say_interval)
            self.request('{"type": "say", "text": "hello, room"}', "say")
