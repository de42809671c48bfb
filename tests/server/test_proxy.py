"""Behind a proxy: the handler sees the original client's address (issue 18 item 11).

A real HAProxy sits between the `websockets` client and fastws: in TCP mode with
send-proxy (PROXY v1) and send-proxy-v2, and in HTTP mode adding X-Forwarded-For. The
client connects from 127.0.0.5 so that its address differs from the proxy's (127.0.0.1).
Raw sockets cover what HAProxy never sends: missing, malformed and untrusted headers.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from websockets.sync.client import connect

from fastws.config import Config, ConfigError
from tests.conftest import ServerFactory, ServerProcess, free_port
from tests.readme import blocks, serve_options
from tests.server.haproxy import HAProxy

APPS_MODULE = "tests.server.parity_apps"
APP = f"{APPS_MODULE}:report_request"
CLIENT_HOST = "127.0.0.5"
PROXY_HOST = "127.0.0.3"


def tcp_mode(port: int, backend: int, send_proxy: str) -> str:
    """HAProxy in TCP mode on PROXY_HOST:port, relaying to fastws on 127.0.0.1:backend with
    a PROXY header (`send_proxy`: send-proxy or send-proxy-v2)."""
    return f"""
frontend ws
    mode tcp
    bind {PROXY_HOST}:{port}
    default_backend fastws
backend fastws
    mode tcp
    server s1 127.0.0.1:{backend} {send_proxy}
"""


def client_socket(host: str, port: int) -> socket.socket:
    """A TCP connection from CLIENT_HOST, the address the handler should report."""
    sock = socket.socket()
    sock.bind((CLIENT_HOST, 0))
    sock.settimeout(10)
    sock.connect((host, port))
    return sock


def report(sock: socket.socket, path: str = "/", **kwargs: Any) -> dict[str, Any]:
    """Open a WebSocket over `sock` and return what the handler reported."""
    host, port = sock.getpeername()[:2]
    with connect(f"ws://{host}:{port}{path}", sock=sock, open_timeout=10, **kwargs) as ws:
        return json.loads(ws.recv(timeout=10))


def server_reply(server: ServerProcess, data: bytes) -> bytes:
    """Send raw bytes; return all the server answered before closing."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("send_proxy", ["send-proxy", "send-proxy-v2"])
def test_haproxy_proxy_protocol_gives_the_client_address(
    start_server: ServerFactory, send_proxy: str
) -> None:
    """HAProxy in TCP mode sends a PROXY v1 / v2 header; the handler's remote_address is
    the client's address and port, not HAProxy's."""
    server = start_server(APP, workers=0, proxy_protocol="require")
    port = free_port(PROXY_HOST)
    with HAProxy(tcp_mode(port, server.port, send_proxy), [(PROXY_HOST, port)]):
        sock = client_socket(PROXY_HOST, port)
        client = list(sock.getsockname())
        seen = report(sock, "/chat?x=1")
    assert seen["remote_address"] == client
    assert seen["path"] == "/chat"


def test_haproxy_forwardfor_gives_the_client_address(start_server: ServerFactory) -> None:
    """HAProxy in HTTP mode appends the client to X-Forwarded-For; from a trusted proxy the
    handler sees that client, and a forged entry the client put in front is not believed.
    The same request through an untrusted proxy leaves remote_address the proxy's."""
    trusting = start_server(APP, workers=0, forwarded_allow_ips="127.0.0.1")
    untrusting = start_server(APP, workers=0)
    ports = free_port(PROXY_HOST), free_port(PROXY_HOST)
    sections = "".join(
        f"""
frontend ws{i}
    mode http
    bind {PROXY_HOST}:{port}
    option forwardfor
    default_backend fastws{i}
backend fastws{i}
    mode http
    server s1 127.0.0.1:{server.port}
"""
        for i, (port, server) in enumerate(zip(ports, [trusting, untrusting], strict=True))
    )
    forged = {"additional_headers": {"X-Forwarded-For": "6.6.6.6"}}
    with HAProxy(sections, [(PROXY_HOST, port) for port in ports]):
        seen = report(client_socket(PROXY_HOST, ports[0]), **forged)
        assert seen["remote_address"] == [CLIENT_HOST, 0]  # X-Forwarded-For has no port
        assert seen["x_forwarded_for"] == ["6.6.6.6", CLIENT_HOST]  # HAProxy adds a field
        seen = report(client_socket(PROXY_HOST, ports[1]), **forged)
        assert seen["remote_address"][0] == "127.0.0.1"  # HAProxy's side of the connection


def test_required_proxy_header_missing_or_malformed_drops_the_connection(
    start_server: ServerFactory,
) -> None:
    """proxy_protocol=require: a connection without a valid PROXY header gets no answer (it
    is not HTTP yet), one log line, and the server goes on serving proxied clients."""
    server = start_server(APP, workers=0, proxy_protocol="require")
    request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    assert server_reply(server, request) == b""
    server.wait_for_log("refused: no PROXY protocol header")
    assert server_reply(server, b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n" + request) == b""
    server.wait_for_log("refused: malformed address in PROXY v1 line")
    sock = socket.create_connection((server.host, server.port), timeout=10)
    sock.sendall(b"PROXY TCP6 2001:db8::5 ::1 4711 80\r\n")
    assert report(sock)["remote_address"] == ["2001:db8::5", 4711]


def test_optional_proxy_header_is_believed_from_trusted_peers_only(
    start_server: ServerFactory,
) -> None:
    """proxy_protocol=optional: a connection may come with or without a header; a header
    from a peer outside forwarded_allow_ips is read and ignored (anyone could send one)."""
    trusting = start_server(
        APP, workers=0, proxy_protocol="optional", forwarded_allow_ips="::1,127.0.0.0/8"
    )
    untrusting = start_server(APP, workers=0, proxy_protocol="optional")
    header = b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n"
    for server, expected in [(trusting, "192.0.2.1"), (untrusting, CLIENT_HOST)]:
        sock = client_socket(server.host, server.port)
        sock.sendall(header)
        assert report(sock)["remote_address"][0] == expected
        plain = client_socket(server.host, server.port)
        assert report(plain)["remote_address"][0] == CLIENT_HOST


def test_forwarded_header_is_believed_from_trusted_peers_only(
    start_server: ServerFactory,
) -> None:
    """A client that talks to fastws directly cannot choose its address with a header; a
    trusted peer's RFC 7239 Forwarded header (address and port) wins over X-Forwarded-For."""
    headers = {"Forwarded": 'for="[2001:db8::9]:4711"', "X-Forwarded-For": "7.7.7.7"}
    untrusting = start_server(APP, workers=0, forwarded_allow_ips="127.0.0.1,10.0.0.0/8")
    sock = client_socket(untrusting.host, untrusting.port)
    client = list(sock.getsockname())
    assert report(sock, additional_headers=headers)["remote_address"] == client
    trusting = start_server(APP, workers=0, forwarded_allow_ips=CLIENT_HOST)
    sock = client_socket(trusting.host, trusting.port)
    assert report(sock, additional_headers=headers)["remote_address"] == ["2001:db8::9", 4711]


def test_proxy_protocol_with_tls_is_refused_at_start() -> None:
    """The PROXY header comes before TLS, which fastws starts on accept: one clear error."""
    with pytest.raises(ConfigError, match="terminate TLS at the proxy"):
        Config(proxy_protocol="require", certfile="cert.pem")
    with pytest.raises(ConfigError, match="not an IP address or network"):
        Config(forwarded_allow_ips="10.0.0.0/33")


@pytest.mark.parametrize("example", [0, 1], ids=["proxy-protocol", "x-forwarded-for"])
def test_readme_proxy_examples(start_server: ServerFactory, example: int) -> None:
    """The README's two set-ups, as written (the fastws command line and the HAProxy
    configuration, on test ports): the handler sees the client's address."""
    command = blocks("Behind a proxy", "sh")[example]
    config = blocks("Behind a proxy", "haproxy")[example]
    server = start_server(APP, workers=0, **serve_options(command))
    port = free_port(PROXY_HOST)
    config = config.replace("bind :8080", f"bind {PROXY_HOST}:{port}")
    config = config.replace("127.0.0.1:8765", f"127.0.0.1:{server.port}")
    with HAProxy(config, [(PROXY_HOST, port)]):
        sock = client_socket(PROXY_HOST, port)
        client = sock.getsockname()
        seen = report(sock)
    assert seen["remote_address"][0] == client[0]
    assert seen["remote_address"][1] in (client[1], 0)  # X-Forwarded-For carries no port


def test_asgi_app_behind_haproxy_send_proxy_v2(start_server: ServerFactory) -> None:
    """An ASGI application behind HAProxy's send-proxy-v2: scope["client"] is the client's
    address for an HTTP request and for a WebSocket (upgraded from the HTTP front end)."""
    server = start_server(f"{APPS_MODULE}:asgi_client", workers=0, proxy_protocol="require")
    port = free_port(PROXY_HOST)
    with HAProxy(tcp_mode(port, server.port, "send-proxy-v2"), [(PROXY_HOST, port)]):
        sock = client_socket(PROXY_HOST, port)
        client = list(sock.getsockname())
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
        sock.close()
        assert json.loads(reply.partition(b"\r\n\r\n")[2]) == client
        sock = client_socket(PROXY_HOST, port)
        client = list(sock.getsockname())
        with connect(f"ws://{PROXY_HOST}:{port}/", sock=sock, open_timeout=10) as ws:
            assert json.loads(ws.recv(timeout=10)) == client
    assert server_reply(server, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") == b""  # no header
    server.wait_for_log("refused: no PROXY protocol header")


def test_asgi_scope_client_behind_a_trusted_proxy(start_server: ServerFactory) -> None:
    """An ASGI application's HTTP requests get the client a trusted proxy names in
    scope["client"] (uvicorn's --forwarded-allow-ips); an untrusted peer's header is not
    believed."""
    request = (
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 192.0.2.9\r\nConnection: close\r\n\r\n"
    )
    for allow, expected in [("127.0.0.1", "192.0.2.9"), ("10.0.0.0/8", "127.0.0.1")]:
        server = start_server(f"{APPS_MODULE}:asgi_client", workers=0, forwarded_allow_ips=allow)
        reply = server_reply(server, request)
        assert reply.startswith(b"HTTP/1.1 200"), reply
        assert json.loads(reply.partition(b"\r\n\r\n")[2])[0] == expected
