"""examples/streaming: Chromium sends large ArrayBuffers to the demo's server, which reads them
with ws.stream() and answers their SHA-256; it sends one back. Every byte is checked."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any


def test_upload_a_file_and_random_bytes_then_download(
    demo: Any, new_page: Any, tmp_path: Path
) -> None:
    """A file picked in the page (8 MiB) reaches the server byte-exact: its hash, computed by
    the server from the streamed pieces, is the file's; so is a generated upload's (the page's
    WebCrypto hash); a 8 MiB download arrives with the hash the server announced."""
    server = demo("streaming")
    page = new_page()
    page.goto(server.url)
    page.wait_for_function("() => window.demo.ready")

    data = os.urandom(8 << 20)
    upload = tmp_path / "upload.bin"
    upload.write_bytes(data)
    page.set_input_files("#file", str(upload))
    page.click("#send")
    page.wait_for_function("() => window.demo.results.length === 1")
    page.set_input_files("#file", [])
    page.fill("#upload-mib", "3")
    page.click("#send")
    page.wait_for_function("() => window.demo.results.length === 2")
    page.fill("#download-mib", "8")
    page.click("#fetch")
    page.wait_for_function("() => window.demo.results.length === 3")
    first, generated, download = page.evaluate("() => window.demo.results")

    assert first["server"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert first["server"]["bytes"] == len(data) and first["match"]
    assert first["server"]["pieces"] > 1  # streamed, not held whole
    assert 7.9 < first["server"]["entropy"] <= 8.0
    assert generated["bytes"] == 3 << 20 and generated["match"]
    assert download["bytes"] == 8 << 20 and download["match"]
    assert "same bytes" in page.text_content("#download")
    for result in (first, generated, download):
        assert result["seconds"] > 0
