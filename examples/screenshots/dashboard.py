"""Make the README's dashboard screenshot from a real server under a changing load.

    python -m examples.screenshots.dashboard            # writes examples/screenshots/dashboard.png

Starts `fastws serve --dashboard --workers 2` on a free loopback port, runs three phases of
load with the `websockets` client (small echoes from 8 connections, then 256 KiB echoes from
2, then 64-byte echoes from 4 while others are opened and closed in a loop, some with 4000),
and screenshots /dashboard in Debian's Chromium (Playwright, `/usr/bin/chromium`) during
the last phase. Every figure on the picture is the server's own; nothing is drawn by hand.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright
from websockets.sync.client import connect

OUT = Path(__file__).with_name("dashboard.png")
CHROMIUM_ARGS = ["--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]


def echo(url: str, size: int, until: float) -> None:
    payload = os.urandom(size)
    with connect(url, max_size=None, compression=None) as ws:
        while time.monotonic() < until:
            ws.send(payload)
            ws.recv()


def churn(url: str, until: float) -> None:
    n = 0
    while time.monotonic() < until:
        with connect(url, compression=None) as ws:
            ws.send("hello")
            ws.recv()
            if n % 3 == 0:
                ws.close(4000, "bye")
        n += 1
        time.sleep(0.01)


def phase(target: object, args: tuple[object, ...], count: int, seconds: float) -> None:
    until = time.monotonic() + seconds
    threads = [threading.Thread(target=target, args=(*args, until)) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "fastws", "serve", "--port", str(port), "--workers", "2"),
            *("--dashboard", "--log-level", "warning"),
        ],
        start_new_session=True,
    )
    base = f"127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://{base}/healthz", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
            )
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://{base}/dashboard")
            time.sleep(3)
            phase(echo, (f"ws://{base}", 1024), 8, 15)
            phase(echo, (f"ws://{base}", 256 * 1024), 2, 15)
            # Last phase: small echoes and churn together, photographed while they run.
            mixed = [
                threading.Thread(target=phase, args=(echo, (f"ws://{base}", 64), 4, 15)),
                threading.Thread(target=phase, args=(churn, (f"ws://{base}",), 2, 15)),
            ]
            for thread in mixed:
                thread.start()
            time.sleep(12)
            page.screenshot(path=str(OUT), full_page=True)
            for thread in mixed:
                thread.join()
            browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
