"""``p2pchat demo --web``: the demo run drawn live in a browser as a space-time diagram.

A :class:`DemoFeed` follows the run (it is the demo's observer) and keeps every
event as a JSON line: the chat's own objects (``message``, ``stable``,
``concurrent``, ``peer_up``, ...) rendered by :mod:`p2pchat.jsonlines`, each with
two keys added: ``lane`` (which peer published it) and ``t`` (seconds into the
run). ``demo`` opens the stream (the lanes) and ``finished`` closes it (the
verdict). A page that connects gets everything so far, then the rest live, so
it can also replay the run from the start.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any, TextIO

import trio
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..demo import DemoResult, demo_options, run_demo
from ..jsonlines import dumps, peer_event_object
from ..peer import Peer, PeerEvent
from ..transport import parse_host_port
from .chat import page_app
from .guard import Guard, new_token
from .server import format_host, serve_web

__all__ = ["DemoFeed", "demo_app", "run_web_demo"]

LINES_PER_FRAME = 2000


class DemoFeed:
    """Every event of the run as a JSON line, and a way to wait for more."""

    def __init__(self) -> None:
        self._peers: list[Peer] = []
        self.lines: list[str] = []
        self._changed = trio.Event()
        self.page_opened = trio.Event()

    def _add(self, obj: dict[str, Any]) -> None:
        self.lines.append(dumps(obj))
        self._changed.set()
        self._changed = trio.Event()

    async def wait_beyond(self, count: int) -> None:
        """Return once more than ``count`` lines are held."""
        while len(self.lines) <= count:
            await self._changed.wait()

    # The demo's observer ------------------------------------------------------------
    def started(self, peers: list[Peer]) -> None:
        self._peers = list(peers)
        lanes = [{"lane": i, "name": p.name, "peer_id": p.peer_id, "url": p.url} for i, p in enumerate(peers)]
        self._add({"event": "demo", "lanes": lanes})

    def peer_event(self, lane: int, time: float, event: PeerEvent) -> None:
        self._add({**peer_event_object(event, self._peers[lane].log), "lane": lane, "t": round(time, 4)})

    def finished(self, result: DemoResult) -> None:
        self._add(
            {
                "event": "finished",
                "identical": result.identical,
                "messages": result.messages,
                "digest": result.digest,
            }
        )


def demo_app(feed: DemoFeed, *, token: str) -> Guard:
    async def events(websocket: WebSocket) -> None:
        await websocket.accept()
        feed.page_opened.set()
        sent = 0
        try:
            while True:
                while sent < len(feed.lines):
                    chunk = feed.lines[sent : sent + LINES_PER_FRAME]
                    await websocket.send_text("\n".join(chunk))
                    sent += len(chunk)
                await feed.wait_beyond(sent)
        except WebSocketDisconnect:
            pass

    return Guard(page_app("demo.html", events), token=token, port=0)


async def run_web_demo(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Serve the live diagram, run the demo once a page is open, serve on until Ctrl-C."""
    try:
        host, port = parse_host_port(args.web)
    except ValueError as exc:
        print(f"p2pchat demo: --web: {exc}", file=sys.stderr)
        return 2
    feed = DemoFeed()
    token = new_token()
    app = demo_app(feed, token=token)
    outcome: list[DemoResult] = []

    async def run() -> None:
        await feed.page_opened.wait()
        result = await run_demo(**demo_options(args), out=out, observer=feed)
        feed.finished(result)
        outcome.append(result)
        print("The page stays open for replay; Ctrl-C to stop.", file=out, flush=True)

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            app.port = await nursery.start(serve_web, app, host, port)
            url = f"http://{format_host(host)}:{app.port}/?token={token}"
            print(f"Open the live diagram: {url}", file=out, flush=True)
            print("The run starts when the page is open.", file=out, flush=True)
            nursery.start_soon(run)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()
    return 0 if outcome and outcome[0].identical else 1
