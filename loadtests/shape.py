"""A stepped load shape: ramp the connected users 0 -> step 1 -> step 2 ..., wait at each step
until the users are actually connected (not just spawned), then hold it long enough to read the
latency at that level. Use it next to a user file (a shape makes locust ignore -u/-r/-t):

    locust -f loadtests/echo.py,loadtests/shape.py --host ws://127.0.0.1:8000/ --headless \
        --steps 1000,5000,10000,20000 --step-hold 30 --step-rate 500

Connected users are counted from locust's own statistics (successful `WS connect` minus
`WS close` failures), which workers report to the master every few seconds. Each step's
start, connected and end times go to --step-log (JSON lines) for loadtests/run.py.
"""

from __future__ import annotations

import json
import time
from typing import Any

import locust.runners
from locust import LoadTestShape, events

# A worker busy connecting a batch of users on a loaded machine can go 3 s without a
# heartbeat, locust's limit, and be dropped, which ends the run. Connecting is this load
# test's point, so give workers longer (a module setting of locust, read at each heartbeat).
locust.runners.HEARTBEAT_LIVENESS = max(locust.runners.HEARTBEAT_LIVENESS, 15)


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument(
        "--steps", default="100,500,1000", help="comma-separated user counts, in order"
    )
    parser.add_argument("--step-hold", type=float, default=20.0, help="seconds to hold each step")
    parser.add_argument("--step-rate", type=float, default=200.0, help="users spawned per second")
    parser.add_argument(
        "--step-connect-timeout",
        type=float,
        default=120.0,
        help="give up waiting for a step to be connected after this many seconds (then hold)",
    )
    parser.add_argument("--step-log", default="", help="append step events here (JSON lines)")


class StepShape(LoadTestShape):
    def __init__(self) -> None:
        super().__init__()
        self.step = 0
        self.phase = "ramp"
        self.phase_start = 0.0

    def _options(self) -> Any:
        return self.runner.environment.parsed_options  # type: ignore[union-attr]

    def connected(self) -> int:
        stats = self.runner.environment.stats  # type: ignore[union-attr]
        connect = stats.entries.get(("connect", "WS"))
        close = stats.entries.get(("close", "WS"))
        ok = connect.num_requests - connect.num_failures if connect is not None else 0
        return ok - (close.num_failures if close is not None else 0)

    def _log(self, event: str, users: int) -> None:
        path = self._options().step_log
        if path:
            with open(path, "a") as f:
                record = {"time": time.time(), "event": event, "step": self.step, "users": users}
                record["connected"] = self.connected()
                f.write(json.dumps(record) + "\n")

    def tick(self) -> tuple[int, float] | None:
        options = self._options()
        steps = [int(s) for s in options.steps.split(",") if s.strip()]
        if self.step >= len(steps):
            return None
        users = steps[self.step]
        now = time.monotonic()
        if self.phase == "ramp":
            if not self.phase_start:
                self.phase_start = now
                self._log("ramp", users)
            waited = now - self.phase_start
            if self.connected() >= users or waited > options.step_connect_timeout:
                self.phase, self.phase_start = "hold", now
                self._log("hold", users)
        elif now - self.phase_start >= options.step_hold:
            self._log("end", users)
            self.step += 1
            self.phase, self.phase_start = "ramp", 0.0
            return self.tick()
        return users, options.step_rate
