"""Why a dial failed, in the words a user needs ("connection refused", "unknown host").

The peer's dialer wraps a failure to connect (as opposed to a connection that
ended later) in :class:`DialError`, so it can tell the two apart through trio's
exception groups, and publishes the reason.
"""

from __future__ import annotations

import errno
import socket

import trio
from trio_websocket import ConnectionClosed, HandshakeError

__all__ = ["DialError", "dial_failure_reason", "find_dial_error"]


class DialError(Exception):
    """Dialing failed before a connection existed; ``reason`` in plain words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def find_dial_error(exc: BaseException) -> DialError | None:
    if isinstance(exc, DialError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := find_dial_error(inner)) is not None:
                return found
    return None


def dial_failure_reason(exc: BaseException) -> str:
    """Why a dial failed, in the words a user needs ("connection refused", "unknown host")."""
    if isinstance(exc, BaseExceptionGroup):
        return dial_failure_reason(exc.exceptions[0])
    if isinstance(exc, trio.TooSlowError):
        return "no answer (timed out)"
    if isinstance(exc, HandshakeError):
        return "not a p2pchat peer (the WebSocket handshake failed)"
    if isinstance(exc, ConnectionClosed):
        return "the connection was closed during the handshake"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, OSError):
        # trio reports "all attempts to connect failed" with the real errors as the cause.
        cause = exc.__cause__
        if exc.errno is None and cause is not None:
            return dial_failure_reason(cause)
        if exc.errno == errno.ECONNREFUSED:
            return "connection refused"
        return (exc.strerror or str(exc)).lower()
    return str(exc) or type(exc).__name__
