"""WebSocket transport on trio-websocket, hardened against its known pitfalls.

trio-websocket 0.12.2's ``serve_websocket`` runs every connection's handler and
background reader in one nursery with the listener, so one connection's error --
a ping that arrives while the connection closes (upstream issue #184), or any
exception in a handler -- takes the whole listener down. Here each accepted TCP
stream gets a nursery of its own and everything it raises stays there.

Also: ``connect_timeout`` does not fire when a server accepts TCP and then
stays silent, so every dial and every server handshake is wrapped in
``trio.fail_after``; and ``disconnect_timeout`` (60 s by default) is replaced
by a short bound on closing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import trio
from trio_websocket import WebSocketConnection, wrap_client_stream, wrap_server_stream

from .address import split_peer_url
from .wire import MAX_FRAME_BYTES

__all__ = ["Handler", "close_reason", "dial", "parse_host_port", "serve_websockets", "url_of"]

logger = logging.getLogger("p2pchat.transport")

Handler = Callable[[WebSocketConnection, trio.Nursery], Awaitable[None]]

RECEIVE_BUFFER = 64 * 1024
MESSAGE_QUEUE = 64


def parse_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) as a pair; port 0 picks a free port."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def url_of(listener: trio.SocketListener) -> str:
    """The ``ws://`` URL peers can dial to reach ``listener``."""
    host, port = listener.socket.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"ws://{host}:{port}"


def check_url(url: str) -> str:
    """``url`` if it is a ws:// URL with a host and port (and, optionally, ``#`` and the
    peer id to expect there), else ValueError."""
    parts = urlsplit(url)
    if parts.scheme != "ws" or not parts.hostname or parts.port is None:
        raise ValueError(f"expected ws://HOST:PORT or ws://HOST:PORT/#PEER_ID, got {url!r}")
    split_peer_url(url)
    return url


async def serve_websockets(
    handler: Handler,
    host: str,
    port: int,
    *,
    handshake_timeout: float = 10.0,
    max_message_size: int = MAX_FRAME_BYTES,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``host:port`` and run ``handler(connection, nursery)`` per connection.

    Reports the listeners through ``task_status`` (read the port from them).
    """
    listeners = await trio.open_tcp_listeners(port, host=host)

    async def on_stream(stream: trio.SocketStream) -> None:
        try:
            async with trio.open_nursery() as nursery:
                with trio.fail_after(handshake_timeout):
                    request = await wrap_server_stream(
                        nursery,
                        stream,
                        message_queue_size=MESSAGE_QUEUE,
                        max_message_size=max_message_size,
                        receive_buffer_size=RECEIVE_BUFFER,
                    )
                    connection = await request.accept()
                await handler(connection, nursery)
                nursery.cancel_scope.cancel()
        except Exception as exc:  # one connection's failure must not stop the listener
            logger.debug("connection ended with %r", exc)
        finally:
            await trio.aclose_forcefully(stream)

    task_status.started(listeners)
    await trio.serve_listeners(on_stream, listeners)


async def dial(
    nursery: trio.Nursery,
    url: str,
    *,
    timeout: float = 5.0,
    max_message_size: int = MAX_FRAME_BYTES,
) -> WebSocketConnection:
    """Open a WebSocket to ``url``; its background tasks run in ``nursery``.

    The TCP stream is closed when ``nursery`` is cancelled (trio-websocket never
    closes a client's stream itself when the server closes first, nor when the
    handshake is cancelled), so cancel ``nursery`` when done with the connection.
    Raises OSError, trio_websocket.HandshakeError or trio.TooSlowError.
    """
    parts = urlsplit(check_url(url))
    assert parts.hostname is not None and parts.port is not None
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    with trio.fail_after(timeout):
        stream = await trio.open_tcp_stream(parts.hostname, parts.port)
        try:
            connection: WebSocketConnection = await wrap_client_stream(
                nursery,
                stream,
                parts.netloc.rpartition("@")[2],  # the Host header: host:port
                resource,
                message_queue_size=MESSAGE_QUEUE,
                max_message_size=max_message_size,
                receive_buffer_size=RECEIVE_BUFFER,
            )
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
    nursery.start_soon(_close_when_cancelled, stream)
    return connection


async def _close_when_cancelled(stream: trio.SocketStream) -> None:
    try:
        await trio.sleep_forever()
    finally:
        await trio.aclose_forcefully(stream)


MAX_CLOSE_REASON_BYTES = 123
"""A WebSocket close frame carries at most this many bytes of reason (RFC 6455 5.5)."""


def close_reason(reason: str) -> str:
    """``reason`` cut to what a close frame carries, on a character boundary."""
    return reason.encode()[:MAX_CLOSE_REASON_BYTES].decode("utf-8", "ignore")


async def close_quickly(
    connection: WebSocketConnection, code: int, reason: str, timeout: float = 2.0
) -> None:
    """Close with a code and reason, but never wait longer than ``timeout``."""
    with trio.move_on_after(timeout):
        await connection.aclose(code, close_reason(reason))
