"""Who may talk to the local web app: the secret, the ``Host`` and the ``Origin``.

The page runs a peer's chat with the user's identity, so any web site open in the
same browser must not be able to use it. Three checks, each enough on its own
against a different attack:

- **The secret.** Every URL the app hands out carries ``?token=...``; a request
  for the page or the event socket without it is refused (403). Another local
  user, or a site guessing ports, does not know it.
- **Host.** A request whose ``Host`` is a DNS name other than ``localhost`` is
  refused (421). That stops DNS rebinding: a hostile name re-pointed at
  127.0.0.1 makes the browser send that name as ``Host``.
- **Origin.** A browser sends ``Origin`` with every WebSocket handshake and with
  cross-site requests; anything but the app's own origin is refused (403). A
  page on another site cannot open the event socket even if it learnt the secret.

Responses also carry a Content-Security-Policy that allows scripts only from
the app itself (no inline script, no ``eval``), so text that slipped into the
page as HTML still could not run.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "Guard",
    "content_security_policy",
    "host_allowed",
    "load_web_settings",
    "new_token",
    "save_web_settings",
]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SETTINGS_FILE = "web.json"
# Static files are the same for everybody (they hold no data), so they need no secret.
PUBLIC_PREFIX = "/static/"


def new_token() -> str:
    return secrets.token_urlsafe(24)


def load_web_settings(data_dir: Path) -> tuple[str, int]:
    """The peer's web secret and last port, made on first use and kept in its data directory.

    Keeping them lets a restarted peer come back at the same URL, so an open page
    reconnects by itself. The file is private to the user (mode 0600).
    """
    path = data_dir / SETTINGS_FILE
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        token, port = str(saved["token"]), int(saved.get("port", 0))
        if len(token) >= 16:
            return token, port
    except (OSError, ValueError, KeyError, TypeError):
        pass
    token = new_token()
    save_web_settings(data_dir, token, 0)
    return token, 0


def save_web_settings(data_dir: Path, token: str, port: int) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SETTINGS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump({"token": token, "port": port}, file)


def host_allowed(host_header: str, port: int) -> bool:
    """``Host`` must name our port on an IP literal or ``localhost`` (never another DNS name)."""
    parsed = urlsplit(f"//{host_header}")
    try:
        if parsed.port != port:
            return False
    except ValueError:
        return False
    hostname = parsed.hostname or ""
    if hostname == "localhost":
        return True
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return True


def content_security_policy(host_header: str) -> str:
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            f"connect-src 'self' ws://{host_header}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


class Guard:
    """ASGI middleware: refuse what fails a check, add the security headers to the rest."""

    def __init__(self, app: ASGIApp, *, token: str, port: int) -> None:
        self.app = app
        self.token = token
        self.port = port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        refusal = self._refusal(scope, headers, host)
        if refusal is not None:
            status, reason = refusal
            await _refuse(scope, receive, send, status, reason)
            return

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_security_headers(host)]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope, headers: dict[str, str], host: str) -> tuple[int, str] | None:
        if not host_allowed(host, self.port):
            return 421, "unexpected Host header"
        origin = headers.get("origin")
        if scope["type"] == "websocket" and origin is None:
            return 403, "a WebSocket needs an Origin"
        if origin is not None and origin != f"http://{host}":
            return 403, "foreign Origin"
        if scope["path"].startswith(PUBLIC_PREFIX) or scope["path"] == "/favicon.ico":
            return None
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = query.get("token", [""])[0]
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return 403, "missing or wrong token"
        return None


def _security_headers(host: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-security-policy", content_security_policy(host).encode("latin-1")),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
        (b"cache-control", b"no-store"),
    ]


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, reason: str) -> None:
    if scope["type"] == "websocket":
        # Refusing the handshake answers with a plain HTTP 403.
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1008, "reason": reason})
        return
    body = f"{status}: {reason}\n".encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), *_security_headers("")],
        }
    )
    await send({"type": "http.response.body", "body": body})
