"""``p2pchat chat --web``: the chat page and its event socket, served next to the peer.

The page opens ``/ws?token=...`` and receives, exactly as ``chat --json`` prints
them, JSON objects one per line (a WebSocket text frame carries one or more
lines): ``ready`` (with ``web``, the page's own URL), the current log replayed
(``"replayed": true``), then live events. Besides these the socket sends a
``status`` object (members, who stability waits for, counters) whenever it
changes. Every text frame the page sends is one message to send, as one stdin
line is for ``chat --json``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..commands import Command, member_called, parse_line
from ..jsonlines import dumps, logged_message_object, peer_event_object, ready_object, status_object
from ..log import NotAMember, OwnHistoryIncomplete
from ..message import MAX_TEXT_BYTES
from ..peer import Peer
from ..transport import parse_host_port
from .guard import Guard, load_web_settings, new_token, save_web_settings
from .server import format_host, serve_web

__all__ = ["STATIC", "chat_app", "serve_chat_web"]

logger = logging.getLogger("p2pchat.web")

STATIC = Path(__file__).parent / "static"
REPLAY_LINES_PER_FRAME = 2000
STATUS_INTERVAL = 0.5


def chat_app(peer: Peer, *, token: str, host: str) -> Guard:
    """The chat page for ``peer``, behind the :class:`Guard` (secret, Host, Origin).

    The guard's ``port`` is set once the server is bound.
    """

    async def events(websocket: WebSocket) -> None:
        await websocket.accept()
        web_url = f"http://{format_host(host)}:{guard.port}/?token={token}"
        with contextlib.suppress(WebSocketDisconnect):
            await _run_socket(peer, websocket, web_url)

    guard = Guard(page_app("chat.html", events), token=token, port=0)
    return guard


def page_app(page: str, events: Callable[[WebSocket], Awaitable[None]]) -> Starlette:
    """One page (``/``), its static files, and its event socket (``/ws``)."""

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / page, media_type="text/html")

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/", index),
            Route("/favicon.ico", favicon),
            WebSocketRoute("/ws", events),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
    )


async def _run_socket(peer: Peer, websocket: WebSocket, web_url: str) -> None:
    async with peer.subscribe() as events, trio.open_nursery() as nursery:
        # Subscribed before the replay, so nothing falls between the two.
        await websocket.send_text(dumps({**ready_object(peer), "web": web_url}))
        log = peer.log
        for first in range(0, len(log), REPLAY_LINES_PER_FRAME):
            last = min(len(log), first + REPLAY_LINES_PER_FRAME)
            lines = [dumps({**logged_message_object(log, i), "replayed": True}) for i in range(first, last)]
            await websocket.send_text("\n".join(lines))
        nursery.start_soon(_send_status, peer, websocket)
        nursery.start_soon(_receive_texts, peer, websocket, nursery.cancel_scope)
        async for event in events:
            lines = [dumps(peer_event_object(event, peer.log))]
            while True:
                try:
                    lines.append(dumps(peer_event_object(events.receive_nowait(), peer.log)))
                except trio.WouldBlock:
                    break
            await websocket.send_text("\n".join(lines))


async def _send_status(peer: Peer, websocket: WebSocket) -> None:
    last: dict[str, Any] | None = None
    while True:
        status = status_object(peer)
        if status != last:
            await websocket.send_text(dumps(status))
            last = status
        await trio.sleep(STATUS_INTERVAL)


async def _receive_texts(peer: Peer, websocket: WebSocket, scope: trio.CancelScope) -> None:
    """Each text frame from the page is one message to send; the socket closing ends it all."""
    try:
        while True:
            text = (await websocket.receive_text()).strip()
            if not text:
                continue
            if len(text.encode("utf-8")) > MAX_TEXT_BYTES:
                reason = f"message too long (over {MAX_TEXT_BYTES} bytes), not sent"
                await websocket.send_text(dumps({"event": "error", "reason": reason}))
                continue
            try:
                line = parse_line(text)
            except ValueError as exc:
                await websocket.send_text(dumps({"event": "error", "reason": str(exc)}))
                continue
            if isinstance(line, Command):
                await websocket.send_text(dumps(_run_command(peer, line)))
                continue
            text = line
            try:
                await peer.send_many([text])
            except OwnHistoryIncomplete as exc:
                await websocket.send_text(dumps({"event": "error", "reason": str(exc), "unsent": [text]}))
    except (WebSocketDisconnect, RuntimeError, KeyError):
        # The page went away (closing frames surface as these in Starlette).
        scope.cancel()


def _run_command(peer: Peer, command: Command) -> dict[str, Any]:
    """A command typed on the page (see p2pchat.commands), and the object answering it.
    ``/leave`` stops the peer: the page cannot, the chat it serves can."""
    try:
        if command.name == "invite":
            return {"event": "invite", "url": peer.invite()}
        if command.name == "remove":
            peer.remove(member_called(peer.log, command.argument))
            return {"event": "notice", "text": f"proposed to remove {command.argument}"}
    except (ValueError, NotAMember) as exc:
        return {"event": "error", "reason": f"/{command.name}: {exc}"}
    return {"event": "error", "reason": f"/{command.name} works in the chat this page belongs to, not here"}


async def serve_chat_web(
    peer: Peer,
    listen: str,
    data_dir: Path | None,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the chat page for ``peer`` on ``listen`` (HOST:PORT) until cancelled.

    ``task_status.started`` gets the URL to open, secret included. With a data
    directory the secret and the port are remembered there, so a restarted peer
    comes back at the same URL and open pages reconnect (port 0 then means "the
    last port, if it is free").
    """
    host, port = parse_host_port(listen)
    if data_dir is not None:
        token, last_port = load_web_settings(data_dir)
    else:
        token, last_port = new_token(), 0
    app = chat_app(peer, token=token, host=host)
    async with trio.open_nursery() as nursery:
        tries = [port] if port else ([last_port, 0] if last_port else [0])
        for candidate in tries:
            try:
                app.port = await nursery.start(serve_web, app, host, candidate)
                break
            except* OSError as group:
                if candidate == tries[-1]:
                    raise
                logger.info("web port %s is taken (%s), picking another", candidate, group.exceptions[0])
        if data_dir is not None:
            save_web_settings(data_dir, token, app.port)
        task_status.started(f"http://{format_host(host)}:{app.port}/?token={token}")
