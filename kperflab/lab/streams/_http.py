"""The HTTP side of an upgrade: which upgrade a request asks for, Status replies before it, and the 101 itself.

Everything before the 101 is an ordinary HTTP exchange on the `BaseHTTPRequestHandler`: a refused upgrade is a
4xx with a Kubernetes ``Status`` body (client-go decodes it and shows its message) and ``Connection: close``.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any

import h11
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from ..errors import APIError
from ._io import Client, WebSocket


class StreamError(APIError):
    """Answer with this Status (``code``, ``reason``, ``message``): as the HTTP reply before an upgrade, on the
    status channel or error stream after it.

    It is the lab's `APIError`, so the API server's usual handling turns one raised before the upgrade into a Status
    reply too.

    >>> StreamError(400, "BadRequest", "you must specify at least 1 of stdin, stdout, stderr").status()["code"]
    400
    """


def bad_request(message: str) -> StreamError:
    return StreamError(400, "BadRequest", message)


def send_status(handler: BaseHTTPRequestHandler, error: APIError, headers: dict[str, str] | None = None) -> None:
    """Reply ``error``'s Status as JSON with its HTTP code, and close the connection after it."""
    body = json.dumps(error.status()).encode()
    handler.close_connection = True
    handler.send_response(error.code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Cache-Control", "no-cache, private")
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Connection", "close")
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)
    handler.wfile.flush()


def upgrade_kind(handler: BaseHTTPRequestHandler) -> str:
    """``"websocket"``, ``"spdy"`` (``Upgrade: SPDY/3.1``), ``""`` for a request that asks for no upgrade, or the
    lower-cased name of any other upgrade asked for."""
    connection = {t.strip().lower() for v in handler.headers.get_all("Connection") or [] for t in v.split(",")}
    upgrade = (handler.headers.get("Upgrade") or "").strip().lower()
    if "upgrade" not in connection or not upgrade:
        return ""
    if upgrade == "websocket":
        return "websocket"
    if upgrade.startswith("spdy/3.1"):
        return "spdy"
    return upgrade


def offered_subprotocols(handler: BaseHTTPRequestHandler) -> list[str]:
    """The client's ``Sec-WebSocket-Protocol`` values in its order of preference (every header line, comma-split)."""
    return [p.strip() for v in handler.headers.get_all("Sec-WebSocket-Protocol") or [] for p in v.split(",")
            if p.strip()]


def negotiate(offered: list[str], supported: tuple[str, ...]) -> str:
    """The first protocol the client offers that the server supports (wsstream's ``handshake`` order), else a 400
    in its words."""
    for protocol in offered:
        if protocol in supported:
            return protocol
    raise bad_request(f"requested protocol(s) are not supported: [{' '.join(offered)}]; "
                      f"supports [{' '.join(supported)}]")


def accept_websocket(handler: BaseHTTPRequestHandler, subprotocol: str) -> WebSocket:
    """Complete the WebSocket handshake (wsproto checks the key, version and headers) choosing ``subprotocol``,
    echoed in ``Sec-WebSocket-Protocol`` as client-go and the Python client require; then the connection is the
    session's. Raises `StreamError` (400) for a handshake wsproto refuses, before anything is written."""
    head = f"{handler.command} {handler.path} HTTP/1.1\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in handler.headers.items()) + "\r\n"
    conn = WSConnection(ConnectionType.SERVER)
    try:
        conn.receive_data(head.encode("latin-1"))
        request = next((e for e in conn.events() if isinstance(e, Request)), None)
        if request is None:
            raise bad_request("not a WebSocket upgrade request")
        reply = conn.send(AcceptConnection(subprotocol=subprotocol))
    except (RemoteProtocolError, LocalProtocolError, h11.ProtocolError, UnicodeError) as e:
        raise bad_request(f"unable to upgrade websocket connection: {e}") from None
    handler.close_connection = True
    client = Client(handler.connection, handler.rfile)
    client.send(reply)
    return WebSocket(client, conn)


def accept_spdy(handler: BaseHTTPRequestHandler, protocol: str) -> Client:
    """Answer an ``Upgrade: SPDY/3.1`` request with 101 as apimachinery's ``spdy/upgrade.go`` does; then the
    connection carries SPDY frames."""
    handler.close_connection = True
    client = Client(handler.connection, handler.rfile)
    client.send(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                b"X-Stream-Protocol-Version: " + protocol.encode("latin-1") + b"\r\n\r\n")
    return client


def status_of(exc: BaseException) -> dict[str, Any]:
    """The Status an exception stands for: its own (`APIError`), else kube's InternalError wording."""
    status = getattr(exc, "status", None)
    if callable(status):
        try:
            out = status()
            if isinstance(out, dict):
                return out
        except Exception:  # noqa: BLE001 - a broken status() falls back to the generic error below
            pass
    text = str(exc) or type(exc).__name__
    return {"metadata": {}, "status": "Failure", "message": f"Internal error occurred: {text}",
            "reason": "InternalError", "details": {"causes": [{"message": text}]}, "code": 500}
