"""ASGI lifespan: the application's startup and shutdown, once per worker.

The worker's server calls `startup()` before it accepts a connection and `shutdown()` after
its connections are closed. `state` is the dict the application fills at startup; each
request's and WebSocket's scope gets a shallow copy of it (ASGI "state").

An application that does not speak lifespan (it raises on the lifespan scope before
answering) is served without it, as the specification asks. One that answers
``lifespan.startup.failed`` (or raises after answering nothing but having started) stops
the worker with `LifespanFailed`, whose message is one line.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

__all__ = ["Lifespan", "LifespanFailed"]

logger = logging.getLogger("fastws.asgi")

SPEC = {"version": "3.0", "spec_version": "2.0"}


class LifespanFailed(RuntimeError):
    """The application's startup failed; the message is one line saying why."""


def _one_line(message: str) -> str:
    """The last non-empty line: Starlette sends a whole traceback as the message."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


class Lifespan:
    """Runs the application's lifespan scope in a task of its own."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._supported = True
        self._error: BaseException | None = None

    async def startup(self) -> None:
        """Send lifespan.startup and wait for the answer; raise LifespanFailed if it failed."""
        scope = {"type": "lifespan", "asgi": SPEC, "state": self.state}
        self._task = asyncio.get_running_loop().create_task(self._run(scope))
        await self._inbox.put({"type": "lifespan.startup"})
        answer = await self._answer()
        if answer is None:
            if self._supported:
                return
            raise LifespanFailed(f"ASGI lifespan startup failed: {self._error!r}")
        if answer["type"] == "lifespan.startup.failed":
            raise LifespanFailed(
                f"ASGI lifespan startup failed: {_one_line(answer.get('message', ''))}"
            )
        if answer["type"] != "lifespan.startup.complete":
            raise LifespanFailed(f"ASGI lifespan startup: unexpected {answer['type']!r}")

    async def shutdown(self) -> None:
        """Send lifespan.shutdown and wait for the answer (a failure is logged, one line)."""
        task = self._task
        if task is None or task.done():
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        answer = await self._answer()
        if answer is not None and answer["type"] == "lifespan.shutdown.failed":
            logger.error("ASGI lifespan shutdown failed: %s", _one_line(answer.get("message", "")))
        if not task.done():
            try:
                await asyncio.wait_for(task, 5)
            except (TimeoutError, Exception):
                task.cancel()

    async def _answer(self) -> dict[str, Any] | None:
        """The application's next message, or None if its lifespan task ended instead."""
        assert self._task is not None
        getter = asyncio.ensure_future(self._answers.get())
        await asyncio.wait({getter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            return getter.result()
        getter.cancel()
        return None

    async def _run(self, scope: dict[str, Any]) -> None:
        started = False

        async def receive() -> dict[str, Any]:
            return await self._inbox.get()

        async def send(message: dict[str, Any]) -> None:
            nonlocal started
            started = True
            await self._answers.put(message)

        try:
            await self.app(scope, receive, send)
        except BaseException as exc:
            if not started:
                # "If an exception is raised when calling the application callable with a
                # lifespan.startup message or a scope with type lifespan, the server must
                # continue but not send any lifespan events."
                self._supported = True
                logger.info("ASGI lifespan not supported by the application (%r)", exc)
            else:
                self._error = exc
                self._supported = False
            if isinstance(exc, asyncio.CancelledError):
                raise
