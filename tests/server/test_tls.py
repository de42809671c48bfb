"""TLS: --certfile/--keyfile and ssl= serve wss://, and real clients verify the certificate.

A throwaway CA and a server certificate for 127.0.0.1/localhost are made at test time with the
`openssl` command (part of every Debian install), so no key material is stored in the repo. The
clients trust that CA and nothing else: a handshake that succeeds proves the server presented
the certificate chain it was configured with.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from websockets.sync.client import connect

import fastws
from fastws.apps.echo import echo
from tests.wire import TIMEOUT

if TYPE_CHECKING:
    from tests.conftest import ServerFactory, ServerProcess

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


class Certs:
    def __init__(self, directory: Path) -> None:
        self.ca = directory / "ca.pem"
        self.cert = directory / "server.pem"
        self.key = directory / "server.key"
        self.combined = directory / "combined.pem"  # certificate and key in one file
        self.other_ca = directory / "other-ca.pem"


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def _make_ca(directory: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
        "-subj", f"/CN=fastws test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA, a server certificate it signed for 127.0.0.1 and localhost, and an unrelated CA."""
    directory = tmp_path_factory.mktemp("tls")
    _make_ca(directory, "ca")
    _make_ca(directory, "other-ca")
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
        cwd=directory,
    )  # fmt: skip
    (directory / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf",
        cwd=directory,
    )  # fmt: skip
    result = Certs(directory)
    result.combined.write_bytes(result.cert.read_bytes() + result.key.read_bytes())
    return result


def client_context(ca: Path) -> ssl.SSLContext:
    """What a careful client does: verify the chain and the host name against one CA."""
    context = ssl.create_default_context(cafile=str(ca))
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    return context


def wss_url(server: ServerProcess, host: str = "127.0.0.1") -> str:
    return f"wss://{host}:{server.port}/"


@pytest.fixture(scope="module")
def tls_server(start_module_server: ServerFactory, certs: Certs) -> ServerProcess:
    return start_module_server(certfile=certs.cert, keyfile=certs.key, handshake_timeout=0.5)


def test_websockets_client_verifies_certificate(tls_server: ServerProcess, certs: Certs) -> None:
    """--certfile/--keyfile: the websockets library, trusting only our CA, completes a verified
    TLS handshake (chain and host name 127.0.0.1) and gets its echo over wss://."""
    for host in ("127.0.0.1", "localhost"):
        with connect(
            wss_url(tls_server, host),
            ssl=client_context(certs.ca),
            compression=None,
            proxy=None,
            open_timeout=TIMEOUT,
        ) as ws:
            ws.send("over tls")
            assert ws.recv(timeout=TIMEOUT) == "over tls"
            ws.send(b"\x00" * 300_000)  # several TLS records, both ways
            assert ws.recv(timeout=TIMEOUT) == b"\x00" * 300_000
    assert "listening on wss://127.0.0.1:" in tls_server.stderr()


def test_fastws_client_over_wss(tls_server: ServerProcess, certs: Certs) -> None:
    """fastws.connect speaks wss:// with a verifying SSLContext."""

    async def main() -> None:
        async with fastws.connect(wss_url(tls_server), ssl=client_context(certs.ca)) as ws:
            await ws.send("fastws over tls")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "fastws over tls"

    asyncio.run(main())


def test_client_trusting_another_ca_is_refused(tls_server: ServerProcess, certs: Certs) -> None:
    """The verification above is real: a client trusting a different CA rejects the server."""
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(
            wss_url(tls_server),
            ssl=client_context(certs.other_ca),
            proxy=None,
            open_timeout=TIMEOUT,
        )


def test_plain_websocket_on_the_tls_port_gets_no_upgrade(tls_server: ServerProcess) -> None:
    """A TLS server speaks TLS only: a cleartext handshake never gets a 101."""
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=TIMEOUT) as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        received = b""
        try:
            while chunk := sock.recv(4096):
                received += chunk
        except ConnectionResetError:
            pass
    assert b"101" not in received


def test_stalled_tls_handshake_is_dropped(tls_server: ServerProcess, certs: Certs) -> None:
    """--handshake-timeout also bounds the TLS handshake (which comes before any HTTP): a client
    that connects and never sends a ClientHello is disconnected; others are served meanwhile."""
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=TIMEOUT) as silent:
        with connect(
            wss_url(tls_server), ssl=client_context(certs.ca), proxy=None, open_timeout=TIMEOUT
        ) as ws:
            ws.send("meanwhile")
            assert ws.recv(timeout=TIMEOUT) == "meanwhile"
        assert silent.recv(1) == b""  # closed by the server; a hang fails with TimeoutError


def test_certificate_and_key_in_one_file(start_server: ServerFactory, certs: Certs) -> None:
    """--certfile alone works when the PEM file holds the key too."""
    server = start_server(certfile=certs.combined)
    with connect(
        wss_url(server), ssl=client_context(certs.ca), proxy=None, open_timeout=TIMEOUT
    ) as ws:
        ws.send("combined")
        assert ws.recv(timeout=TIMEOUT) == "combined"


def test_ssl_context_in_the_api(certs: Certs) -> None:
    """serve(handler, ssl=SSLContext) serves wss:// from Python, with the context as given."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(certs.cert, certs.key)

    async def main() -> None:
        async with fastws.serve(echo, port=0, ssl=server_context) as server:
            url = f"wss://127.0.0.1:{server.port}/"
            async with fastws.connect(url, ssl=client_context(certs.ca)) as ws:
                await ws.send(b"api")
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == b"api"

    asyncio.run(main())


def test_bad_tls_settings_fail_before_listening(certs: Certs, tmp_path: Path) -> None:
    """Mistakes are reported when the server is built, naming the knob, not at the first client."""
    with pytest.raises(fastws.ConfigError, match="needs certfile"):
        fastws.serve(echo, keyfile=str(certs.key))
    with pytest.raises(fastws.ConfigError, match="cannot load TLS") as missing:
        fastws.serve(echo, certfile=str(tmp_path / "missing.pem"))
    assert missing.value.option == "certfile"
    with pytest.raises(fastws.ConfigError, match="cannot load TLS") as keyless:
        fastws.serve(echo, certfile=str(certs.cert))  # no key anywhere
    # Issue 18 item 13: the message names the option and says what is missing.
    assert f"--certfile {certs.cert}" in str(keyless.value)
    assert "no private key" in str(keyless.value) and "--keyfile" in str(keyless.value)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with pytest.raises(ValueError, match="not both"):
        fastws.serve(echo, certfile=str(certs.combined), ssl=context)


RUN_WITH_WORKERS = """
import os, ssl, sys
import fastws
from tests.process.apps import report_pid

cert, key, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
os.remove(cert), os.remove(key)  # the workers can only use the context object itself
fastws.run(report_pid, ssl=context, workers=2, host="127.0.0.1", port=port, log_level="info")
"""


def test_ssl_context_with_workers(certs: Certs, tmp_path: Path) -> None:
    """fastws.run(handler, ssl=SSLContext, workers=2): the master forks two workers that serve
    wss:// with the inherited context object (its files are deleted before the fork), and a
    verifying client reaches both; TERM stops the master with status 0."""
    import os
    import signal
    import sys
    import time

    from tests.conftest import REPO_ROOT, free_port

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(certs.cert.read_bytes())
    key.write_bytes(certs.key.read_bytes())
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTWS_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_WITH_WORKERS, str(cert), str(key), str(port)],
        cwd=REPO_ROOT,
        env=dict(env, PYTHONPATH=str(REPO_ROOT)),
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        seen: set[int] = set()
        deadline = time.monotonic() + 15
        while len(seen) < 2:
            assert time.monotonic() < deadline, f"workers seen: {seen}"
            assert proc.poll() is None, "the server exited"
            try:
                with connect(
                    f"wss://127.0.0.1:{port}/",
                    ssl=client_context(certs.ca),
                    proxy=None,
                    open_timeout=TIMEOUT,
                ) as ws:
                    seen.add(int(ws.recv(timeout=TIMEOUT)))
                    ws.send("over tls, from a worker")
                    assert ws.recv(timeout=TIMEOUT) == "over tls, from a worker"
            except ConnectionRefusedError:
                time.sleep(0.1)
        assert proc.pid not in seen  # served by forked workers, not by the master
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.stderr is not None
        log = proc.stderr.read()
        proc.stderr.close()
    assert "Traceback" not in log, log


def test_the_master_logs_a_wss_address(start_server: ServerFactory, certs: Certs) -> None:
    """With TLS the master's "listening on" line says wss://, as the workers' lines do."""
    server = start_server(certfile=str(certs.cert), keyfile=str(certs.key), workers=1)
    log = server.wait_for_log("master")
    master_line = next(line for line in log.splitlines() if " master " in line)
    assert f"listening on wss://127.0.0.1:{server.port}" in master_line
