"""The full-screen terminal chat: ``p2pchat chat`` on a terminal.

The screen is drawn by prompt_toolkit, which runs on asyncio; the peer runs on
trio *in guest mode* on top of the same asyncio loop (``trio.lowlevel.
start_guest_run``), so both share one thread and neither polls. The two sides
talk only through thread-safe hand-offs: typed lines go to trio through
``TrioToken.run_sync_soon``; trio asks the UI to redraw with
``Application.invalidate``, which is safe to call from either side.

The conversation is laid out from the ordered log in screen rows
(:mod:`p2pchat.chatview`), so a message that arrives late simply appears in its
place, wrapped and multi-line messages never push the newest line off screen,
and the view can be scrolled. Lines not yet stable are dimmed (tentative: an
earlier message could still arrive); concurrent messages carry a ∥ mark.

Names come from one place, :meth:`ChatScreen.shown_names`: the latest name each
key used, with a key fingerprint where two keys share a name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import outcome
import trio
from prompt_toolkit.application import Application
from prompt_toolkit.filters import Condition
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.layout import HSplit, Layout, Window
from prompt_toolkit.layout.controls import FormattedTextControl, UIContent, UIControl
from prompt_toolkit.layout.dimension import Dimension
from prompt_toolkit.mouse_events import MouseEvent, MouseEventType
from prompt_toolkit.styles import Style
from prompt_toolkit.widgets import TextArea

from .chatview import (
    Entry,
    Row,
    ScrollView,
    day_row,
    dial_failure_text,
    display_names,
    fingerprint,
    fit_status,
    message_rows,
    name_problem,
    not_left_text,
    printable,
    text_width,
    visible_rows,
    wrap,
)
from .commands import member_called
from .evidence import first_per_offender, offence, offender_of, offenders
from .heap import freeze_startup_heap
from .log import NotAMember, OrderedLog, OwnHistoryIncomplete
from .message import MAX_TEXT_BYTES, Message
from .node import text_count
from .notices import membership_notice
from .peer import (
    ClockLieFound,
    DialFailed,
    EquivocationFound,
    MessageDelivered,
    NeighbourDown,
    NeighbourUp,
    Peer,
    PeerConfig,
    open_peer,
)

__all__ = ["ChatScreen", "ChatSetup", "run_tui"]


@dataclass(frozen=True, slots=True)
class ChatSetup:
    """What the full-screen chat runs: the peer to open, and whether to serve the page."""

    name: str
    data_dir: Path
    listen: str
    join: list[str]
    config: PeerConfig
    web: str | None = None
    """Also serve the chat as a web page on this HOST:PORT."""
    room: str | None = None
    private: bool = False


HELP_COMMANDS = [
    ("/who", "everyone in the room"),
    ("/peers", "neighbours now"),
    ("/join URL", "connect to a peer"),
    ("/url", "your join URL, again"),
    ("/invite", "a one-time join URL"),
    ("/nick NAME", "change your name"),
    ("/whois NAME", "their full key"),
    ("/remove NAME", "remove a vanished member"),
    ("/leave", "leave the room for good"),
    ("/quit", "quit (or Ctrl-C)"),
]
HELP_HINTS = [
    "/quit: away until you are back; /leave: for good",
    "/remove: decided by a majority's answers",
    "//text sends /text; Alt-Enter: a new line",
    "PgUp/PgDn, wheel: scroll; End: the newest line",
    "Up: what you sent before",
    "Dim, with ·: tentative (it may still move)",
    "∥: written concurrently (neither saw the other)",
]
"""What /help says: short lines, so that it fits a small screen (see help_lines)."""


def help_lines(width: int) -> list[str]:
    """/help's answer for a screen ``width`` wide: the commands in two columns where
    they fit, else one per line; then the hints."""
    name_width = max(len(name) for name, _ in HELP_COMMANDS) + 2
    entries = [f"{name:<{name_width}}{what}" for name, what in HELP_COMMANDS]
    longest = max(len(entry) for entry in entries)
    column = longest + 2
    if column + longest > width:
        return [*entries, *HELP_HINTS]
    half = (len(entries) + 1) // 2
    pairs = zip(entries[:half], [*entries[half:], ""][:half], strict=True)
    return [f"{left:<{column}}{right}".rstrip() for left, right in pairs] + HELP_HINTS


EXPANDED_NOTICES_SECONDS = 30.0
"""A command's answer (/help, /who, ...) may use most of the screen for this long (see
ChatScreen.notice_height), or until the next line is typed."""


STYLE = Style.from_dict(
    {
        "time": "#888888",
        "name": "bold",
        "own": "bold ansigreen",
        "tentative": "#8a8a8a",
        "concurrent": "ansiyellow bold",
        "disputed": "ansired bold",
        "notice": "ansicyan",
        "warning": "ansiyellow",
        "day": "#888888",
        "marker": "reverse ansicyan",
        "status": "reverse",
        "status.warn": "reverse ansiyellow",
    }
)

SCROLL_WHEEL_ROWS = 3
DIAL_NOTICE_EVERY = 30.0
"""Seconds between repeated notices about the same unreachable address (same reason)."""
FOLD_WINDOW = 2
"""A recurring notice the same as one of the last this many folds into it (a count), so a
peer that refuses us and is redialed ("connected", "disconnected: ...", again and again)
does not push the notices that matter (our URL, a trust warning) off the screen."""


def _starts_words(text: str, pieces: list[str]) -> list[bool]:
    """For each of ``pieces`` (``text`` wrapped) after the first: whether ``text`` broke
    at a space before it (else a word was cut there)."""
    starts: list[bool] = []
    position = 0
    for index, piece in enumerate(pieces):
        found = text.find(piece, position) if piece else -1
        if index:
            starts.append(found <= 0 or text[found - 1].isspace())
        if found >= 0:
            position = found + len(piece)
    return starts


def notice_rows(terminal_rows: int) -> int:
    """Rows for notices: a fifth of the screen, 1 to 6."""
    return min(6, max(1, terminal_rows // 5))


def input_rows(terminal_rows: int) -> int:
    """The input grows with a multi-line draft up to this many rows."""
    return max(1, min(6, terminal_rows // 3))


@dataclass(frozen=True, slots=True)
class Notice:
    """One line of the notice area (``count`` times in a row, if it recurs)."""

    style: str
    text: str
    count: int = 1

    def shown(self) -> str:
        return self.text if self.count == 1 else f"{self.text} ({self.count} times)"


@dataclass
class ChatScreen:
    """What the screen shows, and the bridge between the two event loops."""

    peer: Peer | None = None
    token: trio.lowlevel.TrioToken | None = None
    outbox: trio.MemorySendChannel[str] | None = None
    quit: trio.Event | None = None
    notices: list[Notice] = field(default_factory=list)
    """The recent notices, oldest first."""
    names: dict[bytes, str] = field(default_factory=dict)
    """The latest name each key used (from its newest message, or its handshake)."""
    name_seqs: dict[bytes, int] = field(default_factory=dict)
    view: ScrollView = field(default_factory=ScrollView)
    unreachable: dict[str, tuple[str, float]] = field(default_factory=dict)
    """Addresses we keep failing to reach: url -> (reason, when we last said so)."""
    app: Application[None] | None = None
    draft: TextArea | None = None
    """The input, to give back a text that could not be sent."""
    first_visible: int = 0
    """Index of the first message with a row on screen (at the last redraw)."""
    conversation_height: int = 10
    conversation_width: int = 80
    notices_written: int = 0
    expanded: tuple[int, float] = (0, 0.0)
    """(rows, until when): the notice area grows for the answer to a command."""
    _cache: dict[tuple[object, ...], list[Row]] = field(default_factory=dict)
    _shown: dict[bytes, str] | None = None
    waiting_since: dict[bytes, float] = field(default_factory=dict)
    """Members holding stability back, and since when (monotonic seconds)."""
    leaving: bool = False
    """/leave: leave the room for good when the chat ends (instead of going away)."""
    web_url: str | None = None
    """Where the chat is served as a web page (--web), once it is."""
    unsent: list[str] = field(default_factory=list)
    """Lines typed and not sent yet (before our admission, say): said at the exit."""
    said_offence: str | None = None
    """Our own offence, once said (see _proof_found)."""
    not_left: str | None = None
    """Why /leave wrote no LEAVE, said once the screen is gone (see Peer.leave)."""
    offenders_told: set[bytes] = field(default_factory=set)
    """Members whose proven offence we have explained (see _proof_found)."""

    # Names --------------------------------------------------------------------------------
    def learn_name(self, sender_id: bytes, name: str, seq: int | None = None) -> None:
        """Remember the name ``sender_id`` uses: from a message (newest seq wins) or a hello."""
        if seq is not None:
            if seq < self.name_seqs.get(sender_id, 0):
                return
            self.name_seqs[sender_id] = seq
        if self.names.get(sender_id) != name:
            self.names[sender_id] = name
            self._shown = None

    def shown_names(self) -> dict[bytes, str]:
        """How each key is shown: its name, with a fingerprint when the name is shared.

        The one place names are decided; members whose name is not known yet are
        shown by fingerprint. (Room membership plugs in here: pass its members.)
        """
        members = self.peer.log.members if self.peer is not None else frozenset()
        if self._shown is None or not members <= self._shown.keys():
            self._shown = display_names(self.names, members)
        return self._shown

    def name_of(self, sender_id: bytes | None) -> str:
        if sender_id is None:
            return "a peer"
        return self.shown_names().get(sender_id) or f"#{fingerprint(sender_id)}"

    # Conversation (called by prompt_toolkit while drawing) --------------------------------------
    def conversation_rows(self, width: int, height: int) -> list[Row]:
        self.conversation_height, self.conversation_width = height, width
        peer = self.peer
        if peer is None:
            return [[("class:notice", "starting the peer ...")]]
        log = peer.log
        marker = not self.view.following and height > 1
        hint = [] if text_count(log) else self._hint_rows(width)
        self.first_visible, rows = visible_rows(
            len(log), self.view, lambda i: self.rows_of(i, width), height - (1 if marker else 0) - len(hint)
        )
        if marker:
            rows.append(self._marker_row(width))
        return (rows + hint)[-height:] if height > 0 else []

    @staticmethod
    def _hint_rows(width: int) -> list[Row]:
        hint = "No messages yet. Type below and press Enter. /help for help."
        return [[("class:notice", piece)] for piece in wrap(hint, width)]

    def rows_of(self, index: int, width: int) -> list[Row]:
        """The rows message ``index`` takes (with a date separator above it if the day changed)."""
        log = self.peer.log if self.peer is not None else None
        assert log is not None
        message = log[index]
        when = datetime.fromtimestamp(message.sent_at_ms / 1000)
        previous = log[index - 1] if index else None
        new_day = previous is None or datetime.fromtimestamp(previous.sent_at_ms / 1000).date() != when.date()
        tentative = index >= log.stable_count
        concurrent = log.is_concurrent(message.id)
        disputed = message.sender_id in offenders(log.proofs)
        name = self.name_of(message.sender_id) if message.is_text else self._membership_text(log, message)
        key = (message.id, width, tentative, concurrent, disputed, name, new_day)
        rows = self._cache.get(key)
        if rows is None:
            if message.is_text:
                own = self._is_me(message.sender_id)
                entry = Entry(when, name, message.text, own, tentative, concurrent, disputed)
                rows = message_rows(entry, width)
            elif name:  # a membership entry: a notice in its place ("* bob joined")
                rows = self._membership_rows(name, when, tentative, width)
            else:
                rows = []  # (a FLUSH that completes nothing: bookkeeping, not shown)
            rows = ([day_row(when.date(), width)] if new_day else []) + rows
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = rows
        return rows

    def _membership_text(self, log: OrderedLog, message: Message) -> str:
        """ "bob left", "alice proposes to remove dave · dave was removed"."""
        return printable(membership_notice(log, message, label=self._label))

    def _label(self, member: bytes, name: str) -> str:
        """A member as notices name it: as everywhere on screen (bob#74e7 where two are bob)."""
        if member not in self.names:
            return name  # (not learned yet: shown_names would give its fingerprint alone)
        return self.shown_names().get(member) or name

    @staticmethod
    def _membership_rows(text: str, when: datetime, tentative: bool, width: int) -> list[Row]:
        text = f"{when:%H:%M:%S} * {text}" + ("  ·" if tentative else "")
        first, *rest = wrap(text, width - 2, first_width=width)  # (the rest are indented 2)
        return [[("class:notice", first)], *([("class:notice", "  " + piece)] for piece in rest)]

    def _marker_row(self, width: int) -> Row:
        new = self.view.new_below
        text = f"↓ {new} new below · End to jump" if new else "↓ more below · End to jump"
        return [("class:marker", text[:width].ljust(width))]

    def _is_me(self, sender_id: bytes) -> bool:
        return self.peer is not None and sender_id == self.peer.node.identity.sender_id

    # Scrolling (asyncio side) ----------------------------------------------------------------
    def scroll(self, rows: int) -> None:
        peer = self.peer
        if peer is None:
            return
        width, height = self.conversation_width, max(1, self.conversation_height - 1)
        self.view.scroll(rows, len(peer.log), lambda i: len(self.rows_of(i, width)), height)
        self.redraw()

    def page(self, direction: int) -> None:
        self.scroll(direction * max(1, self.conversation_height - 2))

    def to_end(self) -> None:
        self.view.follow()
        self.redraw()

    # Notices and status ---------------------------------------------------------------------
    def notice_rows(self, width: int, height: int, last: int | None = None) -> list[Row]:
        """The newest notices, wrapped, as the last ``height`` rows (of the ``last`` notices)."""
        rows: list[Row] = []
        for notice in self.notices[-(last or height) :]:
            style, text = notice.style, printable(notice.shown())
            pieces = wrap(text, width - 2, first_width=width)
            rows.append([(style, pieces[0])])
            # Rows after the first are indented where they start a word; a word cut at
            # the edge (a URL, a key) goes on at the margin, whole when copied.
            for piece, new_word in zip(pieces[1:], _starts_words(text, pieces), strict=True):
                rows.append([(style, ("  " if new_word else "") + piece)])
        return rows[-height:]

    def status(self) -> StyleAndTextTuples:
        peer = self.peer
        width = self.app.output.get_size().columns if self.app is not None else 80
        if peer is None:
            return [("class:status", " starting ...".ljust(width))]
        log = peer.log
        me = peer.node.identity.sender_id
        silent_ids = [s for s in log.silent_members() if s != me] if len(log) > log.stable_count else []
        silent = [self.name_of(s) for s in silent_ids]
        since = self._waiting_for(silent_ids)
        tentative = len(log) - log.stable_count
        waiting = f" (+{log.held_count} waiting)" if log.held_count else ""
        parts = [
            (f"{self.name_of(me)} @ {peer.url}", self.name_of(me)),
            (f"peers {peer.node.open_count}", f"p {peer.node.open_count}"),
            (f"messages {text_count(log)}{waiting}", f"m {text_count(log)}"),
            (f"tentative {tentative}", f"t {tentative}"),
        ]
        warn = False
        if self.unreachable:
            parts.insert(2, (f"can't reach {len(self.unreachable)}", f"!{len(self.unreachable)}"))
            warn = True
        if tentative and silent:
            more = f" +{len(silent) - 3}" if len(silent) > 3 else ""
            parts.append((f"waiting on {', '.join(silent[:3])}{more} for {since}", f"waiting on {silent[0]}"))
            warn = True
        style = "class:status.warn" if warn else "class:status"
        if text_width(" " + " │ ".join(long for long, _ in parts) + " ") > width:
            # The full URL to share does not fit with the rest: its peer id is cut (the
            # notice at the top has it in full).
            parts[0] = (f"{self.name_of(me)} @ {_short_url(peer.url)}", self.name_of(me))
        line = fit_status(parts, width)
        return [(style, line.ljust(width))]

    def _waiting_for(self, silent: list[bytes]) -> str:
        """How long the longest-silent of ``silent`` has held stability back, e.g. "2 min"."""
        now = time.monotonic()
        self.waiting_since = {m: self.waiting_since.get(m, now) for m in silent}
        seconds = now - min(self.waiting_since.values(), default=now)
        return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"

    def redraw(self) -> None:
        if self.app is not None:
            self.app.invalidate()

    def note(self, *lines: str, style: str = "class:notice") -> None:
        self.notices.extend(Notice(style, line) for line in lines)
        self.notices_written += len(lines)
        del self.notices[:-100]
        self.redraw()

    def warn(self, *lines: str) -> None:
        self.note(*lines, style="class:warning")

    def note_recurring(self, line: str, style: str = "class:notice") -> None:
        """A notice that may come again and again (links, log lines): one the same as
        one of the last FOLD_WINDOW notices is counted there and moves to the bottom."""
        recent = self.notices[-FOLD_WINDOW:]
        same = next((n for n in recent if n.style == style and n.text == line), None)
        if same is None:
            self.note(line, style=style)
            return
        self.notices.remove(same)
        self.notices.append(Notice(style, line, same.count + 1))
        self.redraw()

    # Input (asyncio side) -> trio ---------------------------------------------------------
    def submit(self, text: str) -> None:
        """What the user typed (maybe several lines): hand it to trio, which owns the peer."""
        token, outbox = self.token, self.outbox
        if token is None or outbox is None or not text.strip():
            return
        self.to_end()  # whoever sends wants to see the newest lines
        self.expanded = (0, 0.0)  # and no longer the answer to an earlier command
        token.run_sync_soon(self._hand_over, outbox, text)

    def _hand_over(self, outbox: trio.MemorySendChannel[str], text: str) -> None:
        try:
            outbox.send_nowait(text)
        except trio.WouldBlock:
            self.warn("! still sending earlier lines; that one was not sent, please retype it")
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self.warn("! the peer is shutting down; not sent")

    def restore_draft(self, text: str) -> None:
        """Put an unsent text back into the input (if the user has not started another)."""
        if self.draft is not None and not self.draft.text:
            self.draft.text = text
            self.redraw()

    def request_quit(self) -> None:
        if self.token is not None and self.quit is not None:
            with contextlib.suppress(trio.RunFinishedError):  # trio already finished
                self.token.run_sync_soon(self.quit.set)

    # Trio side ------------------------------------------------------------------------------
    async def run_peer(self, setup: ChatSetup) -> None:
        name, data_dir, web = setup.name, setup.data_dir, setup.web
        send, receive = trio.open_memory_channel[str](256)
        self.outbox, self.quit = send, trio.Event()
        self.token = trio.lowlevel.current_trio_token()
        async with open_peer(
            name,
            data_dir=data_dir,
            listen=setup.listen,
            join=setup.join,
            config=setup.config,
            room=setup.room,
            private=setup.private,
        ) as peer:
            freeze_startup_heap()  # (what it holds now lives as long as it does)
            self.peer = peer
            for message in peer.log:
                self.learn_name(message.sender_id, message.name, message.seq)
            self.learn_name(peer.node.identity.sender_id, name)
            first, *more = self._where_you_are(peer)
            self.note(f"You are {name}. {first}", *more)
            self._proof_found(peer)  # (kept from before a restart)
            async with trio.open_nursery() as nursery:
                if web is not None:
                    from .web.chat import serve_chat_web

                    self.web_url = await nursery.start(serve_chat_web, peer, web, data_dir)
                    self.note(f"Open the chat in a browser: {self.web_url}")
                nursery.start_soon(self._pump_events, peer)
                nursery.start_soon(self._pump_input, peer, receive)
                nursery.start_soon(self._refresh)
                await self.quit.wait()
                nursery.cancel_scope.cancel()
            self.note("leaving the room ..." if self.leaving else "stopping ...")
            if self.leaving:
                why_not = await peer.leave("with /leave")
                if why_not is not None:
                    self.not_left = not_left_text(why_not, peer.own_state)

    async def _pump_events(self, peer: Peer) -> None:
        async with peer.subscribe() as events:
            async for event in events:
                if isinstance(event, MessageDelivered):
                    self._delivered(peer, event)
                elif isinstance(event, NeighbourUp):
                    self.learn_name(event.sender_id, event.name)
                    self._reached(peer)
                    # (The URL's id cut short: the name says who it is, /peers gives it whole.)
                    where = _short_url(event.url) or "dialed us"
                    self.note_recurring(f"* connected to {self.name_of(event.sender_id)} ({where})")
                elif isinstance(event, NeighbourDown):
                    self._neighbour_down(peer, event)
                elif isinstance(event, DialFailed):
                    self._dial_failed(event)
                elif isinstance(event, EquivocationFound | ClockLieFound):
                    self._proof_found(peer)
                self.redraw()

    def _proof_found(self, peer: Peer) -> None:
        """Proof of a member's offence came: if it is ours, say what it means for us; if
        another's, what its ≠ marks mean (its removal follows as a membership line)."""
        own_offence = peer.node.own_offence()
        if own_offence is not None and own_offence != self.said_offence:
            self.said_offence = own_offence
            self.warn(f"! {own_offence}")
        me = peer.node.identity.sender_id
        for proof in first_per_offender(peer.log.proofs):
            offender = offender_of(proof)
            if offender == me or offender in self.offenders_told:
                continue
            self.offenders_told.add(offender)
            self.warn(
                f"! {self.name_of(offender)} {offence(proof)}: its lines marked ≠ may read "
                "otherwise, or be missing, on other peers"
            )

    def _delivered(self, peer: Peer, event: MessageDelivered) -> None:
        message = event.message
        self.learn_name(message.sender_id, message.name, message.seq)
        newest = event.index == len(peer.log) - 1
        self.view.inserted(event.index, len(peer.log))
        if not newest and message.is_text and event.index < self.first_visible:
            self.note(
                f"↑ a late message from {self.name_of(message.sender_id)} was inserted above the screen "
                f"(#{event.index + 1}, written before what you see); PgUp to read it"
            )
        if event.index < self.first_visible:
            self.first_visible += 1

    def _neighbour_down(self, peer: Peer, event: NeighbourDown) -> None:
        """Say who left, but not the links closed as redundant (both ends dialed each
        other, or an address of our own was dialed): nobody was lost there."""
        still_connected = {sender for _, sender, _ in peer.node.neighbours() if sender}
        if event.sender_id is not None and event.sender_id in still_connected:
            return
        if event.sender_id == peer.node.identity.sender_id:
            return
        self.note_recurring(f"* {self.name_of(event.sender_id)} disconnected: {event.reason}")

    def _dial_failed(self, event: DialFailed) -> None:
        now = trio.current_time()
        said = self.unreachable.get(event.url)
        if event.retry_in is None:
            self.unreachable.pop(event.url, None)
        else:
            self.unreachable[event.url] = (
                event.reason,
                now if said is None or said[0] != event.reason else said[1],
            )
        if said is None or said[0] != event.reason or now - said[1] >= DIAL_NOTICE_EVERY:
            self.warn(f"! {dial_failure_text(event.url, event.reason, event.retry_in)}")
            if event.url in self.unreachable:
                self.unreachable[event.url] = (event.reason, now)

    def _reached(self, peer: Peer) -> None:
        connected = {url for _, _, url in peer.node.neighbours() if url}
        for url in [u for u in self.unreachable if u in connected]:
            del self.unreachable[url]

    async def _refresh(self) -> None:
        while True:  # the status bar has time-dependent parts (who is silent)
            await trio.sleep(1)
            self.redraw()

    async def _pump_input(self, peer: Peer, lines: trio.MemoryReceiveChannel[str]) -> None:
        async for text in lines:
            text = text.rstrip()
            if text.startswith("//"):
                text = text[1:]  # "//x" sends "/x"
            elif text.startswith("/"):
                self._command(peer, text.strip())
                continue
            size = len(text.encode("utf-8"))
            if size > MAX_TEXT_BYTES:
                self.warn(
                    f"! not sent: {size} bytes, over the limit of {MAX_TEXT_BYTES}; it is back in the input"
                )
                self.restore_draft(text)
                continue
            if not peer.is_member:
                self.note("(queued: it is sent once a member of the room has admitted you)")
            self.unsent.append(text)
            try:
                await peer.send(text)
            except OwnHistoryIncomplete as exc:
                self.warn(f"! not sent: {exc}; it is back in the input")
                self.restore_draft(text)
            self.unsent.remove(text)  # (not if the chat ends first: said at the exit)

    def _command(self, peer: Peer, line: str) -> None:
        command, _, argument = line.partition(" ")
        argument = argument.strip()
        handlers: dict[str, Callable[[Peer, str], None]] = {
            "/help": lambda p, a: self.note(*help_lines(self.conversation_width)),
            "/quit": self._quit_command,
            "/leave": self._leave_command,
            "/peers": self._peers_command,
            "/who": self._who_command,
            "/join": self._join_command,
            "/nick": self._nick_command,
            "/whois": self._whois_command,
            "/invite": self._invite_command,
            "/url": self._url_command,
            "/remove": self._remove_command,
        }
        handler = handlers.get(command)
        before = self.notices_written
        if handler is None:
            self.warn(f"unknown command {command}; try /help (//text sends a line starting with /)")
        else:
            handler(peer, argument)
        self.expanded = (self.notices_written - before, time.monotonic() + EXPANDED_NOTICES_SECONDS)
        self.redraw()

    def notice_height(self, terminal_rows: int, width: int) -> int:
        """Rows for notices: a fifth of the screen; more for a while for a command's answer,
        up to all but the status bar, the input and one row of the conversation."""
        count, until = self.expanded
        base = notice_rows(terminal_rows)
        if count and time.monotonic() < until:
            rows = len(self.notice_rows(width, 10_000, last=count))
            return max(base, min(rows, terminal_rows - 3))
        return base

    def _quit_command(self, peer: Peer, argument: str) -> None:
        assert self.quit is not None
        self.quit.set()

    def _leave_command(self, peer: Peer, argument: str) -> None:
        """Leave the room for good (a LEAVE entry), then quit."""
        self.leaving = True
        self._quit_command(peer, argument)

    def _peers_command(self, peer: Peer, argument: str) -> None:
        neighbours = peer.node.neighbours()
        if not neighbours:
            self.note("no peers connected")
        for _, sender_id, url in neighbours:
            who = self.name_of(sender_id) if sender_id else "(handshaking)"
            self.note(f"  {who:<14} {url or '(dialed us)'}")
        for url, (reason, _) in self.unreachable.items():
            self.note(f"  {'(unreachable)':<14} {url}: {reason}")

    def _who_command(self, peer: Peer, argument: str) -> None:
        log = peer.log
        me = peer.node.identity.sender_id
        silent = set(log.silent_members()) - {me}
        connected = {sender for _, sender, _ in peer.node.neighbours() if sender}
        states = {member: info.state.value for member, info in log.member_info().items()}
        everyone = set(states) | {me}
        heard = peer.node.last_heard(trio.current_time())
        shown = self.shown_names()
        active = sum(1 for state in states.values() if state == "active")
        self.note(f"{active} in the room ({len(everyone)} ever admitted):")
        for member in sorted(
            everyone, key=lambda m: (states.get(m) != "active", shown.get(m, "").casefold())
        ):
            flags = [states.get(member, "not admitted yet")]
            if member == me:
                flags.append("you")
            if member in connected:
                flags.append("connected")
            if member in heard:
                flags.append(_heard_text(heard[member]))
            if member in silent and len(log) > log.stable_count:
                flags.append("holding stability back")
            self.note(f"  {self.name_of(member):<16} {', '.join(flags)}".rstrip())

    def _where_you_are(self, peer: Peer) -> list[str]:
        """The start-up notices a user may need again (/url): the URL to share, the
        other addresses, and the URLs we joined that name no peer id."""
        lines = [f"Others can join you with: --join {peer.url}"]
        if len(peer.urls) > 1:
            lines.append(f"(also reachable at {', '.join(peer.urls[1:])})")
        lines.extend(
            f"{url} names no peer id: trusting whoever answers there (trust on first use)"
            for url in peer.unpinned
        )
        return lines

    def _url_command(self, peer: Peer, argument: str) -> None:
        self.note(*self._where_you_are(peer))
        if self.web_url is not None:
            self.note(f"Open the chat in a browser: {self.web_url}")

    def _invite_command(self, peer: Peer, argument: str) -> None:
        try:
            self.note(f"invite (one newcomer, 24 h): {peer.invite()}")
        except NotAMember as exc:
            self.warn(f"/invite: {exc}")

    def _join_command(self, peer: Peer, argument: str) -> None:
        from .transport import check_url

        try:
            url = check_url(argument)
        except ValueError as exc:
            self.warn(f"/join: {exc}; for example /join ws://127.0.0.1:9001")
            return
        peer.join(url)
        self.note(f"joining {url} ...")

    def _nick_command(self, peer: Peer, argument: str) -> None:
        problem = name_problem(argument)
        if problem:
            self.warn(f"/nick: {problem}; for example /nick alice")
            return
        me = peer.node.identity.sender_id
        old = self.name_of(me)
        peer.node.name = argument
        if peer.store is not None:
            peer.store.save_identity(peer.node.identity.seed, argument)
        self.learn_name(me, argument)
        self.note(f"you are now {self.name_of(me)} (was {old}); others see it with your next message")

    def _remove_command(self, peer: Peer, argument: str) -> None:
        if not argument:
            self.warn("/remove: whom? for example /remove dave (/who lists everyone)")
            return
        try:
            member = member_called(peer.log, argument, names=self.names, labels=self.shown_names())
        except ValueError as exc:
            self.warn(f"/remove: {exc}; /who lists everyone")
            return
        try:
            peer.remove(member)
        except ValueError as exc:
            self.warn(f"/remove: {exc}")
            return
        who = self.name_of(member)
        self.note(f"proposed to remove {who}: every other member answers, then it is decided")

    def _whois_command(self, peer: Peer, argument: str) -> None:
        if not argument:
            self.warn("/whois: whose key? for example /whois alice")
            return
        me = peer.node.identity.sender_id
        wanted = argument.casefold()
        shown = self.shown_names()
        found = [
            sender
            for sender, label in shown.items()
            if label.casefold() == wanted or self.names.get(sender, "").casefold() == wanted
        ]
        if not found:
            self.warn(f"/whois: no one called {argument} here; /who lists everyone")
        for sender in sorted(found):
            you = " (you)" if sender == me else ""
            self.note(f"  {shown[sender]}{you}: {sender.hex()}")


# The screen ----------------------------------------------------------------------------------


class _RowsControl(UIControl):
    """A control that asks for exactly the rows that fit (the conversation, the notices)."""

    def __init__(self, rows: Callable[[int, int], list[Row]], on_scroll: Callable[[int], None] | None = None):
        self._rows = rows
        self._on_scroll = on_scroll

    def create_content(self, width: int, height: int) -> UIContent:
        rows = self._rows(width, height)

        def line(index: int) -> StyleAndTextTuples:
            return list(rows[index]) if index < len(rows) else []

        return UIContent(get_line=line, line_count=len(rows))

    def is_focusable(self) -> bool:
        return False

    def mouse_handler(self, mouse_event: MouseEvent) -> object:
        if self._on_scroll is not None:
            if mouse_event.event_type == MouseEventType.SCROLL_UP:
                self._on_scroll(SCROLL_WHEEL_ROWS)
                return None
            if mouse_event.event_type == MouseEventType.SCROLL_DOWN:
                self._on_scroll(-SCROLL_WHEEL_ROWS)
                return None
        return NotImplemented


def _heard_text(seconds: float | None) -> str:
    """When a member was last heard from (/who): "heard 5 s ago", "heard 3 min ago"."""
    if seconds is None:
        return "not heard from yet"
    if seconds < 120:
        return f"heard {seconds:.0f} s ago"
    if seconds < 7200:
        return f"heard {seconds / 60:.0f} min ago"
    return f"heard {seconds / 3600:.0f} h ago"


def _short_url(url: str | None) -> str:
    """A join URL with its peer id cut to 8 digits, for a status bar too narrow for all of
    it (the full one is in the notice at the top), or a neighbour's in a notice."""
    if url is None:
        return ""
    base, sep, peer_id = url.partition("#")
    return f"{base}#{peer_id[:8]}…" if sep else url


def _build_app(screen: ChatScreen, on_exit: Callable[[], None]) -> Application[None]:
    def terminal_rows() -> int:
        return screen.app.output.get_size().rows if screen.app is not None else 24

    entry = TextArea(
        multiline=True,
        wrap_lines=True,
        history=InMemoryHistory(),
        get_line_prefix=lambda line, wrapped: "> " if line == 0 and wrapped == 0 else "│ ",
        height=lambda: Dimension(min=1, max=input_rows(terminal_rows())),
        dont_extend_height=True,
    )

    def accept(buffer: object) -> bool:
        screen.submit(entry.text)
        return False  # clear the input (the text goes into the Up-arrow history)

    entry.accept_handler = accept
    screen.draft = entry
    keys = KeyBindings()
    scrolled = Condition(lambda: not screen.view.following)

    @keys.add("c-c")
    @keys.add("c-q")
    def _quit(event: KeyPressEvent) -> None:
        on_exit()

    @keys.add("enter", eager=True)
    def _send(event: KeyPressEvent) -> None:
        entry.buffer.validate_and_handle()

    @keys.add("escape", "enter")
    def _newline(event: KeyPressEvent) -> None:
        entry.buffer.insert_text("\n")

    @keys.add("pageup")
    def _page_up(event: KeyPressEvent) -> None:
        screen.page(+1)

    @keys.add("pagedown")
    def _page_down(event: KeyPressEvent) -> None:
        screen.page(-1)

    @keys.add("end", filter=scrolled)
    @keys.add("c-end")
    def _end(event: KeyPressEvent) -> None:
        screen.to_end()

    conversation = Window(_RowsControl(screen.conversation_rows, screen.scroll))

    def notice_height() -> Dimension:
        columns = screen.app.output.get_size().columns if screen.app is not None else 80
        return Dimension.exact(screen.notice_height(terminal_rows(), columns))

    notices = Window(_RowsControl(screen.notice_rows), height=notice_height)
    layout = Layout(
        HSplit([conversation, notices, Window(FormattedTextControl(screen.status), height=1), entry]),
        focused_element=entry,
    )
    return Application(layout=layout, key_bindings=keys, style=STYLE, full_screen=True, mouse_support=True)


class _ScreenLogHandler(logging.Handler):
    """Log records as notices inside the chat screen (never drawn over it)."""

    def __init__(self, screen: ChatScreen, level: int) -> None:
        super().__init__(level)
        self.screen = screen

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"log {record.levelname.lower()}: {record.getMessage()}"
            style = "class:warning" if record.levelno >= logging.WARNING else "class:notice"
            self.screen.note_recurring(text, style)
        except Exception:  # logging must never break the chat
            self.handleError(record)


async def _run(setup: ChatSetup, verbose: bool) -> int:
    loop = asyncio.get_running_loop()
    screen = ChatScreen()
    finished: asyncio.Future[outcome.Outcome[None]] = loop.create_future()
    app = _build_app(screen, screen.request_quit)
    screen.app = app
    root = logging.getLogger()
    handler = _ScreenLogHandler(screen, logging.INFO if verbose else logging.WARNING)
    root.addHandler(handler)
    root.setLevel(min(root.level, handler.level) if root.handlers[:-1] else handler.level)

    def trio_done(result: outcome.Outcome[None]) -> None:
        if not finished.done():
            finished.set_result(result)
        app.exit()

    trio.lowlevel.start_guest_run(
        screen.run_peer,
        setup,
        run_sync_soon_threadsafe=loop.call_soon_threadsafe,
        done_callback=trio_done,
        host_uses_signal_set_wakeup_fd=True,
    )
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, screen.request_quit)
    try:
        await app.run_async()
        screen.request_quit()  # the UI ended first (e.g. the terminal went away)
        result = await finished
    finally:
        root.removeHandler(handler)
    result.unwrap()
    for text in screen.unsent:  # (the screen is gone: said where it was)
        print(f"p2pchat chat: not sent (the peer stopped before it could write it): {printable(text)}")
    if screen.not_left is not None:
        print(f"p2pchat chat: {screen.not_left}")
    return 0


def run_tui(setup: ChatSetup, *, verbose: bool = False) -> int:
    """Run the full-screen chat until the user quits (with ``setup.web``, serve the page
    too); the exit code."""
    return asyncio.run(_run(setup, verbose))
