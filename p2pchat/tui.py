"""The full-screen terminal chat: ``p2pchat chat`` on a terminal.

The screen is drawn by prompt_toolkit, which runs on asyncio; the peer runs on
trio *in guest mode* on top of the same asyncio loop (``trio.lowlevel.
start_guest_run``), so both share one thread and neither polls. The two sides
talk only through thread-safe hand-offs: typed lines go to trio through
``TrioToken.run_sync_soon``; trio asks the UI to redraw with
``Application.invalidate``, which is safe to call from either side.

The conversation is redrawn from the ordered log every time, so a message that
arrives late simply appears in its place. Lines not yet stable are dimmed
(tentative: an earlier message could still arrive); concurrent messages carry
a ∥ mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import outcome
import trio
from prompt_toolkit.application import Application
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.layout import HSplit, Layout, Window
from prompt_toolkit.layout.controls import FormattedTextControl
from prompt_toolkit.styles import Style
from prompt_toolkit.widgets import TextArea

from .identity import short_id
from .jsonlines import entry_object
from .log import NotAMember, OrderedLog, OwnHistoryIncomplete
from .message import EntryKind, Message
from .node import text_count
from .peer import NeighbourDown, NeighbourUp, Peer, PeerConfig, open_peer

__all__ = ["ChatScreen", "membership_line", "run_tui"]

HELP = [
    "/peers      neighbours connected now",
    "/who        everyone in the room, and who holds stability back",
    "/join URL   connect to another peer (ws://HOST:PORT/#ID)",
    "/invite     a one-time join URL for one newcomer (invite-only rooms; 24 h)",
    "/help       this help       /quit  leave (Ctrl-C, Ctrl-Q too)",
    "Dim lines are tentative: an earlier message may still arrive. ∥ marks messages",
    "written concurrently (neither author had seen the other).",
]

_PHRASES = {"joined": "joined", "back": "is back", "left": "left", "away": "is away"}


def membership_line(log: OrderedLog, message: Message) -> str:
    """A membership entry as the conversation shows it: "carol joined", "erin is away"."""
    if message.kind is EntryKind.GENESIS:
        return f"{message.name} founded the room {message.text!r}"
    obj = entry_object(log, message, index=0, concurrent=False, stable=False)
    return f"{obj['name']} {_PHRASES.get(obj['action'], obj['action'])}"


STYLE = Style.from_dict(
    {
        "time": "#888888",
        "name": "bold",
        "own": "bold ansigreen",
        "tentative": "#8a8a8a",
        "concurrent": "ansiyellow bold",
        "notice": "ansicyan",
        "status": "reverse",
        "status.warn": "reverse ansiyellow",
    }
)

NOTICE_LINES = 6


@dataclass
class ChatScreen:
    """What the screen shows, and the bridge between the two event loops."""

    peer: Peer | None = None
    token: trio.lowlevel.TrioToken | None = None
    outbox: trio.MemorySendChannel[str] | None = None
    quit: trio.Event | None = None
    notices: list[str] = field(default_factory=list)
    names: dict[bytes, str] = field(default_factory=dict)
    app: Application[None] | None = None

    # Drawing (called by prompt_toolkit on the asyncio side; same thread) -----------
    def conversation(self) -> StyleAndTextTuples:
        peer = self.peer
        if peer is None:
            return [("class:notice", "starting the peer ...")]
        log = peer.log
        rows = self._rows_available()
        first = max(0, len(log) - rows)
        me = peer.node.identity.sender_id
        text: StyleAndTextTuples = []
        for index in range(first, len(log)):
            message = log[index]
            tentative = index >= log.stable_count
            when = datetime.fromtimestamp(message.sent_at_ms / 1000).strftime("%H:%M:%S")
            body = "class:tentative" if tentative else ""
            name = "class:own" if message.sender_id == me else "class:name"
            text.append(("class:time", f"{when} "))
            if not message.is_text:
                text.append(("class:notice", f"* {membership_line(log, message)}"))
                text.append(("class:tentative", "  ·\n" if tentative else "\n"))
                continue
            text.append((f"{name} {body}".strip(), f"{message.name}"))
            text.append((body, f": {message.text}"))
            if log.is_concurrent(message.id):
                text.append(("class:concurrent", " ∥"))
            if tentative:
                text.append(("class:tentative", "  ·"))
            text.append(("", "\n"))
        if not text_count(log):
            text.append(("class:notice", "No messages yet. Type below and press Enter. /help for help.\n"))
        return text

    def notice_area(self) -> StyleAndTextTuples:
        return [("class:notice", "\n".join(self.notices[-NOTICE_LINES:]))]

    def status(self) -> StyleAndTextTuples:
        peer = self.peer
        if peer is None:
            return [("class:status", " starting ...")]
        log = peer.log
        silent = [self._name(s) for s in log.silent_members() if s != peer.node.identity.sender_id]
        tentative = len(log) - log.stable_count
        parts = [
            f" {peer.name} @ {peer.url}",
            f"peers {peer.node.open_count}",
            f"messages {text_count(log)}" + (f" (+{log.held_count} waiting)" if log.held_count else ""),
            f"tentative {tentative}",
        ]
        style = "class:status"
        if tentative and silent:
            parts.append(f"waiting on {', '.join(silent[:3])}")
            style = "class:status.warn"
        line = " │ ".join(parts) + " "
        if self.app is not None and len(line) > self.app.output.get_size().columns:
            # The full URL to share does not fit: the peer id is cut (it is in full above).
            parts[0] = f" {peer.name} @ {_short_url(peer.url)}"
            line = " │ ".join(parts) + " "
        return [(style, line)]

    def _rows_available(self) -> int:
        if self.app is None:
            return 20
        return max(1, self.app.output.get_size().rows - NOTICE_LINES - 2)

    def _name(self, sender_id: bytes) -> str:
        return self.names.get(sender_id) or short_id(sender_id)

    def redraw(self) -> None:
        if self.app is not None:
            self.app.invalidate()

    def note(self, *lines: str) -> None:
        self.notices.extend(lines)
        del self.notices[:-50]
        self.redraw()

    # Input (asyncio side) -> trio ---------------------------------------------------------
    def submit(self, line: str) -> None:
        """A line typed by the user: hand it to trio, which owns the peer."""
        token, outbox = self.token, self.outbox
        if token is None or outbox is None or not line.strip():
            return
        token.run_sync_soon(self._hand_over, outbox, line)

    def _hand_over(self, outbox: trio.MemorySendChannel[str], line: str) -> None:
        try:
            outbox.send_nowait(line)
        except trio.WouldBlock:
            self.note("! still sending earlier lines; that one was not sent, please retype it")
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self.note("! the peer is shutting down; not sent")

    def request_quit(self) -> None:
        if self.token is not None and self.quit is not None:
            with contextlib.suppress(trio.RunFinishedError):  # trio already finished
                self.token.run_sync_soon(self.quit.set)

    # Trio side ------------------------------------------------------------------------------
    async def run_peer(
        self,
        name: str,
        data_dir: Path,
        listen: str,
        join: list[str],
        config: PeerConfig,
        web: str | None = None,
        private: bool = False,
    ) -> None:
        send, receive = trio.open_memory_channel[str](256)
        self.outbox, self.quit = send, trio.Event()
        self.token = trio.lowlevel.current_trio_token()
        async with open_peer(
            name, data_dir=data_dir, listen=listen, join=join, config=config, private=private
        ) as peer:
            self.peer = peer
            for message in peer.log:
                self.names[message.sender_id] = message.name
            self.note(f"You are {name}. Others can join you with: --join {peer.url}")
            for url in peer.unpinned:
                self.note(f"{url} names no peer id: trusting whoever answers there (trust on first use)")
            async with trio.open_nursery() as nursery:
                if web is not None:
                    from .web.chat import serve_chat_web

                    web_url = await nursery.start(serve_chat_web, peer, web, data_dir)
                    self.note(f"Open the chat in a browser: {web_url}")
                nursery.start_soon(self._pump_events, peer)
                nursery.start_soon(self._pump_input, peer, receive)
                nursery.start_soon(self._refresh)
                await self.quit.wait()
                nursery.cancel_scope.cancel()
            self.note("leaving ...")

    async def _pump_events(self, peer: Peer) -> None:
        async with peer.subscribe() as events:
            async for event in events:
                if isinstance(event, NeighbourUp):
                    self.names[event.sender_id] = event.name
                    self.note(f"* connected to {event.name} ({event.url})")
                elif isinstance(event, NeighbourDown):
                    who = self._name(event.sender_id) if event.sender_id else "a peer"
                    self.note(f"* {who} disconnected: {event.reason}")
                elif hasattr(event, "message"):
                    self.names[event.message.sender_id] = event.message.name
                self.redraw()

    async def _refresh(self) -> None:
        while True:  # the status bar has time-dependent parts (who is silent)
            await trio.sleep(1)
            self.redraw()

    async def _pump_input(self, peer: Peer, lines: trio.MemoryReceiveChannel[str]) -> None:
        async for line in lines:
            if line.startswith("/"):
                self._command(peer, line.strip())
            else:
                try:
                    await peer.send(line)
                except OwnHistoryIncomplete as exc:
                    self.note(f"! not sent: {exc}")

    def _command(self, peer: Peer, line: str) -> None:
        command, _, argument = line.partition(" ")
        if command == "/help":
            self.note(*HELP)
        elif command == "/quit":
            assert self.quit is not None
            self.quit.set()
        elif command == "/peers":
            neighbours = peer.node.neighbours()
            if not neighbours:
                self.note("no peers connected")
            for _, sender_id, url in neighbours:
                who = self._name(sender_id) if sender_id else "(handshaking)"
                self.note(f"  {who:<12} {url or '(dialed us)'}")
        elif command == "/who":
            silent = set(peer.log.silent_members())
            for member in sorted(peer.log.members, key=self._name):
                flag = (
                    "  (holding stability back)"
                    if member in silent and len(silent) < len(peer.log.members)
                    else ""
                )
                self.note(f"  {self._name(member):<12} {member.hex()[:16]}{flag}")
        elif command == "/invite":
            try:
                self.note(f"invite (one newcomer, 24 h): {peer.invite()}")
            except NotAMember as exc:
                self.note(f"/invite: {exc}")
        elif command == "/join":
            try:
                from .transport import check_url

                peer.join(check_url(argument.strip()))
                self.note(f"joining {argument.strip()} ...")
            except ValueError as exc:
                self.note(f"/join: {exc}")
        else:
            self.note(f"unknown command {command}; try /help")


def _short_url(url: str | None) -> str:
    """A join URL with its peer id cut to 8 digits, for a status bar too narrow for all of
    it (the full one is in the notice at the top)."""
    if url is None:
        return ""
    base, sep, peer_id = url.partition("#")
    return f"{base}#{peer_id[:8]}…" if sep else url


def _build_app(screen: ChatScreen, on_exit: Callable[[], None]) -> Application[None]:
    entry = TextArea(height=1, prompt="> ", multiline=False, wrap_lines=False)

    def accept(buffer: object) -> bool:
        screen.submit(entry.text)
        return False  # clear the input line

    entry.accept_handler = accept
    keys = KeyBindings()

    @keys.add("c-c")
    @keys.add("c-q")
    def _quit(event: KeyPressEvent) -> None:
        on_exit()

    layout = Layout(
        HSplit(
            [
                Window(FormattedTextControl(screen.conversation), wrap_lines=True),
                Window(FormattedTextControl(screen.notice_area), height=NOTICE_LINES),
                Window(FormattedTextControl(screen.status), height=1),
                entry,
            ]
        ),
        focused_element=entry,
    )
    return Application(layout=layout, key_bindings=keys, style=STYLE, full_screen=True)


async def _run(
    name: str,
    data_dir: Path,
    listen: str,
    join: list[str],
    config: PeerConfig,
    web: str | None = None,
    private: bool = False,
) -> int:
    loop = asyncio.get_running_loop()
    screen = ChatScreen()
    finished: asyncio.Future[outcome.Outcome[None]] = loop.create_future()
    app = _build_app(screen, screen.request_quit)
    screen.app = app

    def trio_done(result: outcome.Outcome[None]) -> None:
        if not finished.done():
            finished.set_result(result)
        app.exit()

    trio.lowlevel.start_guest_run(
        screen.run_peer,
        name,
        data_dir,
        listen,
        join,
        config,
        web,
        private,
        run_sync_soon_threadsafe=loop.call_soon_threadsafe,
        done_callback=trio_done,
        host_uses_signal_set_wakeup_fd=True,
    )
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, screen.request_quit)
    await app.run_async()
    screen.request_quit()  # the UI ended first (e.g. the terminal went away)
    result = await finished
    result.unwrap()
    return 0


def run_tui(
    name: str,
    data_dir: Path,
    listen: str,
    join: list[str],
    config: PeerConfig,
    web: str | None = None,
    private: bool = False,
) -> int:
    """Run the full-screen chat until the user quits (with ``web``, serve the page too); the exit code."""
    return asyncio.run(_run(name, data_dir, listen, join, config, web, private))
