"""The test pages' web server: static files over HTTP on 127.0.0.1, and a result mailbox.

Browsers need a real http:// origin (module scripts and Workers do not load from file://, and
the Origin header is part of what is tested). Pages that run without a WebDriver POST their
report to /result/TOKEN; `wait_result(TOKEN)` hands it to the test.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["STATIC", "TestSite"]

STATIC = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}
MAX_RESULT = 1 << 20


class TestSite:
    """Serves STATIC on a free port until `close()`."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, root: Path = STATIC) -> None:
        self.root = root
        self.requests: list[str] = []  # "METHOD /path", for failure reports
        self._results: dict[str, Any] = {}
        self._changed = threading.Condition()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self.port: int = self._httpd.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def url_for(self, path: str) -> str:
        return self.origin + path

    def wait_result(
        self, token: str, timeout: float, alive: Callable[[], bool] = lambda: True
    ) -> Any:
        """The JSON a page POSTed to /result/TOKEN. AssertionError if none comes within
        `timeout`, or as soon as `alive()` (checked twice a second) says the browser is gone."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while token not in self._results:
                left = deadline - time.monotonic()
                if left <= 0 or not alive():
                    why = f"within {timeout} s" if left <= 0 else "before the browser exited"
                    raise AssertionError(
                        f"no result posted to /result/{token} {why}; requests seen: {self.requests}"
                    )
                self._changed.wait(min(left, 0.5))
            return self._results.pop(token)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # kept in site.requests instead of stderr

            def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                site.requests.append(f"GET {self.path}")
                name = self.path.partition("?")[0].lstrip("/") or "index.html"
                path = (site.root / name).resolve()
                if path.parent != site.root or not path.is_file():
                    self._reply(HTTPStatus.NOT_FOUND, b"not found\n")
                    return
                content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
                self._reply(HTTPStatus.OK, path.read_bytes(), content_type)

            def do_POST(self) -> None:
                site.requests.append(f"POST {self.path}")
                prefix, _, token = self.path.lstrip("/").partition("/")
                length = int(self.headers.get("Content-Length") or 0)
                if prefix != "result" or not token or length > MAX_RESULT:
                    self._reply(HTTPStatus.NOT_FOUND, b"not found\n")
                    return
                body = self.rfile.read(length)
                try:
                    result = json.loads(body)
                except ValueError:
                    result = {"error": f"unparsable result: {body[:200]!r}"}
                with site._changed:
                    site._results[token] = result
                    site._changed.notify_all()
                self._reply(HTTPStatus.NO_CONTENT, b"")

        return Handler
