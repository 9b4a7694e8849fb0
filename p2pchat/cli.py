"""The ``p2pchat`` command: a thin ``main(argv) -> int`` around the library.

Subcommands: ``chat`` (run a peer; ``--json`` for the machine contract),
``log`` (print a stored log) and ``sim`` (the deterministic simulator).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from . import __version__
from .arguments import number, whole_number
from .chatview import dial_failure_text, name_problem, not_left_text, printable
from .commands import Command, member_called, parse_line
from .errors import WRITABLE, UserError, explain
from .evidence import offence, offender_of, offenders
from .heap import freeze_startup_heap
from .identity import short_id
from .jsonlines import (
    dumps,
    iso_time,
    logged_message_object,
    peer_event_object,
    proof_objects,
    ready_object,
    statistics_object,
)
from .log import NotAMember, OrderedLog, OwnHistoryIncomplete
from .message import MAX_TEXT_BYTES
from .node import NodeConfig
from .notices import members_changed_notice, membership_notice
from .peer import (
    ClockLieFound,
    DialFailed,
    EquivocationFound,
    MembersChanged,
    MessageDelivered,
    NeighbourDown,
    NeighbourUp,
    Peer,
    PeerConfig,
    PeerEvent,
    default_data_dir,
    open_peer,
    restore_log,
)
from .store import Store, StoreFormatError
from .transport import check_url, parse_host_port

__all__ = ["main", "run"]


CHAT_DESCRIPTION = """\
Run a peer and chat. On a terminal this opens the full-screen chat; otherwise
(or with --json) each line of standard input is sent as a message.

In the chat, type a line and press Enter to send it; Alt-Enter (or a paste)
starts a new line within one message. Commands:
  /peers        neighbours connected now
  /who          everyone in the room (active, away, left), who holds stability back
  /leave        leave the room for good (a quit only marks you away)
  /remove NAME  propose to remove a member that vanished (see --member-timeout)
  /invite       a one-time join URL (invite-only rooms)
  /join URL     connect to another peer (ws://HOST:PORT)
  /nick NAME    change your display name
  /whois NAME   the full key of everyone shown as NAME
  /help, /quit  (Ctrl-C and Ctrl-Q quit too)
  //text        send a line that starts with "/"
PgUp/PgDn and the mouse wheel scroll, End jumps to the newest line, Up recalls
what you sent.

Your key, your messages and your clock live in the data directory:
--data DIR, by default $XDG_DATA_HOME/p2pchat/NAME (~/.local/share/p2pchat/NAME).
Only one process at a time can use a data directory."""

CHAT_EXAMPLES = """\
examples:
  p2pchat chat --name alice --listen 127.0.0.1:9001
  p2pchat chat --name bob --join ws://127.0.0.1:9001
  p2pchat chat --name carol --listen 0.0.0.0:9100     # reachable from other machines
  p2pchat chat --name bot --join ws://127.0.0.1:9001 --json < lines.txt"""

LOG_EXAMPLES = """\
examples:
  p2pchat log --name alice
  p2pchat log --data ./alice-data --json | jq .text"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written; every option's default shown after its help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        shown = default not in (None, False, [], argparse.SUPPRESS) and "default" not in text
        if action.option_strings and shown:
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="p2pchat",
        description="Serverless group chat: peers gossip signed messages over WebSockets, "
        "and every peer shows them in the same order.",
        epilog="examples:\n  p2pchat demo\n  p2pchat chat --name alice --listen 127.0.0.1:9001\n"
        "  p2pchat chat --name bob --join ws://127.0.0.1:9001\n"
        "Each command has its own help: p2pchat chat --help",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"p2pchat {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log more (in the full-screen chat: inside the screen)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from .demo import add_demo_parser

    add_demo_parser(commands)
    add_chat_parser(commands)
    add_log_parser(commands)
    from .sim_cli import add_sim_parser

    add_sim_parser(commands)
    from .bench import add_bench_parser

    add_bench_parser(commands)
    for subparser in commands.choices.values():
        subparser.formatter_class = HelpFormatter
    return parser


def add_chat_parser(commands: Any) -> None:
    chat = commands.add_parser(
        "chat", help="run a peer and chat", description=CHAT_DESCRIPTION, epilog=CHAT_EXAMPLES
    )
    chat.add_argument("--name", required=True, type=name_argument, help="your display name (not unique)")
    chat.add_argument(
        "--listen",
        default="127.0.0.1:0",
        type=_host_port,
        metavar="HOST:PORT",
        help="where others reach you; port 0 picks a free one; 0.0.0.0 listens on every interface",
    )
    chat.add_argument(
        "--join",
        action="append",
        default=[],
        type=_ws_url,
        metavar="URL",
        help="a peer's ws:// URL (repeatable)",
    )
    chat.add_argument(
        "--data",
        type=path_argument,
        metavar="DIR",
        help="data directory (default: $XDG_DATA_HOME/p2pchat/NAME)",
    )
    chat.add_argument("--json", action="store_true", help="JSON lines on stdout, one message per stdin line")
    chat.add_argument(
        "--room",
        metavar="ID",
        help="reopen this stored room (hex id or a prefix; default: the room last used, "
        "else the room of the peers you --join, else a new room)",
    )
    chat.add_argument(
        "--private",
        action="store_true",
        help="found a new invite-only room (others join with /invite URLs); not with --join or --room",
    )
    chat.add_argument(
        "--connections",
        type=whole_number(0),
        default=PeerConfig().target_connections,
        metavar="N",
        help="dial addresses learned from neighbours while fewer than N are connected (0: only --join)",
    )
    chat.add_argument(
        "--member-timeout",
        type=number(0, above=True),
        default=NodeConfig().member_timeout,
        metavar="SECONDS",
        help="propose to remove a member unheard of for this long (default %(default)s s): "
        "it takes the answers of every other member and of a strict majority",
    )
    from .demo import delay_range

    chat.add_argument(
        "--simulate-delay",
        type=delay_range,
        metavar="MIN-MAX",
        help="hold every outgoing frame MIN-MAX ms, to watch reordering on one machine",
    )
    chat.add_argument(
        "--web",
        nargs="?",
        const="127.0.0.1:0",
        type=_host_port,
        metavar="HOST:PORT",
        help="also serve the chat as a web page (default 127.0.0.1, a free port); prints its URL",
    )


def add_log_parser(commands: Any) -> None:
    log = commands.add_parser(
        "log",
        help="print a peer's stored log",
        description="Print a peer's stored log in the shared order (it may run while the peer runs), "
        "then the proofs it keeps against members it expelled. "
        "Control characters in the text are shown escaped; --json keeps the exact text.",
        epilog=LOG_EXAMPLES,
    )
    which = log.add_mutually_exclusive_group(required=True)
    which.add_argument("--data", type=path_argument, metavar="DIR", help="the peer's data directory")
    which.add_argument(
        "--name", type=name_argument, help="the peer's name: its default data directory (as chat --name uses)"
    )
    log.add_argument("--room", metavar="ID", help="which room (hex id or prefix; default: the last used)")
    log.add_argument("--json", action="store_true", help="one JSON object per line, text exactly as sent")

    rooms = commands.add_parser(
        "rooms",
        help="list the rooms stored in a data directory",
        description="List the rooms stored in a data directory: id, entries, when last used, name.",
        epilog="examples:\n  p2pchat rooms --data ~/.local/share/p2pchat/alice",
    )
    rooms.add_argument(
        "--data", type=path_argument, required=True, metavar="DIR", help="the peer's data directory"
    )


# Argument types: every value is checked before anything starts ------------------------------


def name_argument(text: str) -> str:
    problem = name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{problem}, got {text!r}")
    return text


def path_argument(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("a directory can't be empty (leave the option out for the default)")
    return Path(text).expanduser()


def _host_port(text: str) -> str:
    try:
        parse_host_port(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _ws_url(text: str) -> str:
    try:
        return check_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def chat_data_dir(args: argparse.Namespace) -> Path:
    """``--data``, or the per-name default (a name that is not a plain file name needs --data).

    Checked before anything starts (the full-screen chat would otherwise flash up first).
    """
    if args.data is not None:
        path = Path(args.data)
    elif "/" in args.name or "\\" in args.name or args.name.strip() in (".", ".."):
        raise UserError(f"the name {args.name!r} can't name a data directory.\nGive --data DIR as well.")
    else:
        path = default_data_dir(args.name)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UserError(
            f"the data directory {path} is a file, or inside one ({existing}).\n"
            "Give --data a directory (it is created if missing)."
        )
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"can't write the data directory {path}: permission denied.\n{WRITABLE}")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    full_screen = args.command == "chat" and not args.json and sys.stdin.isatty() and sys.stdout.isatty()
    if not full_screen:  # the full-screen chat shows log lines inside its screen
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.WARNING,
            format="%(asctime)s %(name)s %(levelname)s %(message)s",
            stream=sys.stderr,
        )
    try:
        return dispatch(args, full_screen)
    except Exception as exc:
        message = explain(exc, listen=getattr(args, "listen", None), data_dir=getattr(args, "data_dir", None))
        if message is None:
            raise
        print(f"p2pchat {args.command}: {message}", file=sys.stderr)
        return 1


def dispatch(args: argparse.Namespace, full_screen: bool) -> int:
    if args.command == "chat":
        if args.private and (args.join or args.room):
            # (Checked before the data directory is made: nothing is written for a mistake.)
            with_what = "--join (the room you join has its own policy)" if args.join else "--room"
            raise UserError(f"--private founds a new invite-only room: not with {with_what}.")
        args.data_dir = chat_data_dir(args)
        if full_screen:
            from .tui import ChatSetup, run_tui

            setup = ChatSetup(
                args.name,
                args.data_dir,
                args.listen,
                args.join,
                peer_config(args),
                web=args.web,
                room=args.room,
                private=args.private,
            )
            return run_tui(setup, verbose=args.verbose)
        return trio.run(chat, args)
    if args.command == "log":
        args.data_dir = args.data if args.data is not None else default_data_dir(args.name)
        return print_log(args.data_dir, args.room, as_json=args.json)
    if args.command == "rooms":
        args.data_dir = args.data  # (named in what a failure says)
        return print_rooms(args.data)
    if args.command == "demo":
        from .demo import run_demo_command

        return run_demo_command(args)
    if args.command == "bench":
        from .bench import run_bench_command

        return run_bench_command(args)
    from .sim_cli import run_sim

    return run_sim(args)


def run() -> None:
    """Console-script entry point: a closed pipe or Ctrl-C ends quietly."""
    try:
        code = main()
        sys.stdout.flush()
    except BaseException as exc:
        if _only(exc, BrokenPipeError):
            _quiet_stdout()
            code = 0
        elif _only(exc, KeyboardInterrupt):
            code = 130
        else:
            raise
    sys.exit(code)


def _only(exc: BaseException, kind: type[BaseException]) -> bool:
    """``exc`` is a ``kind``, or a group (trio wraps) of nothing else."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only(inner, kind) for inner in exc.exceptions)
    return isinstance(exc, kind)


def _quiet_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush is silent."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


# chat ----------------------------------------------------------------------------------


@dataclass
class _Session:
    """A line-oriented chat: what stdin asked for and is not done yet, and how it ends
    (a signal, or ``/leave``: then for good)."""

    stop: trio.Event = field(default_factory=trio.Event)
    leaving: bool = False
    leave_wait: trio.CancelScope = field(default_factory=trio.CancelScope)
    """Around /leave's wait for a neighbour to hold our LEAVE: a signal then ends it."""
    to_do: deque[str | Command] = field(default_factory=deque)
    """Lines not sent yet and commands not run yet, in stdin order (see _send_stdin_lines)."""
    arrived: trio.Event = field(default_factory=trio.Event)

    def unsent(self) -> list[str]:
        return [item for item in self.to_do if isinstance(item, str)]


async def chat(args: argparse.Namespace) -> int:
    data_dir = args.data_dir
    output = _json_output if args.json else _text_output
    config = peer_config(args)
    session = _Session()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        # Leaving open_peer says goodbye to every neighbour and stores what is unsaved.
        async with open_peer(
            args.name,
            data_dir=data_dir,
            listen=args.listen,
            join=args.join,
            config=config,
            room=args.room,
            private=args.private,
        ) as peer:
            freeze_startup_heap()  # (what it holds now lives as long as it does)
            async with trio.open_nursery() as nursery:
                web_url = await _start_web(args, peer, data_dir, nursery)
                nursery.start_soon(output, peer, nursery, session, web_url)
                nursery.start_soon(_stop_on_signal, signals, session)
                await session.stop.wait()
                # (The member event of our LEAVE or AWAY is printed before the output stops.)
                if session.leaving:
                    why_not = None  # (a signal may cut the wait short: the LEAVE is written)
                    with session.leave_wait:
                        why_not = await peer.leave("with /leave")
                    if why_not is not None:
                        _say_error(not_left_text(why_not, peer.own_state), args.json)
                else:
                    await peer.go_away()
                nursery.cancel_scope.cancel()
            if unsent := session.unsent():
                _say_error("not sent: the peer stopped before it could write them", args.json, unsent)
            if args.json:
                _emit(dumps(statistics_object(peer)))
    return 0


async def _stop_on_signal(signals: AsyncIterator[int], session: _Session) -> None:
    """The first signal stops the chat; one while /leave waits for a neighbour to hold
    our LEAVE (see Peer.leave) stops that wait."""
    async for _ in signals:
        if session.stop.is_set():
            session.leave_wait.cancel()
        session.stop.set()


async def _start_web(
    args: argparse.Namespace, peer: Peer, data_dir: Path, nursery: trio.Nursery
) -> str | None:
    """With ``--web``, serve the chat page next to the peer; its URL (with the secret)."""
    if args.web is None:
        return None
    from .web.chat import serve_chat_web

    url: str = await nursery.start(serve_chat_web, peer, args.web, data_dir)
    return url


def peer_config(args: argparse.Namespace) -> PeerConfig:
    delay = args.simulate_delay
    return PeerConfig(
        target_connections=args.connections,
        link_delay=(delay[0] / 1000, delay[1] / 1000) if delay else None,
        node=NodeConfig(member_timeout=args.member_timeout),
    )


def _emit(line: str) -> None:
    try:
        print(line, flush=True)
    except BrokenPipeError:
        raise SystemExit(0) from None


async def _json_output(
    peer: Peer, nursery: trio.Nursery, session: _Session, web_url: str | None = None
) -> None:
    async with peer.subscribe() as events:
        _emit(dumps({**ready_object(peer), "web": web_url} if web_url else ready_object(peer)))
        log = peer.log
        for index in range(len(log)):
            _emit(dumps({**logged_message_object(log, index), "replayed": True}))
        for proof in proof_objects(log):  # (proofs kept from before a restart)
            _emit(dumps({**proof, "replayed": True}))
        if (own_offence := peer.node.own_offence()) is not None:
            _emit(dumps({"event": "error", "reason": own_offence}))
        nursery.start_soon(_send_stdin_lines, peer, session)
        try:
            async for event in events:
                # The tasks the same delivery woke go first: the writers that send it on
                # to our neighbours should not wait for a write to stdout (5 peers in a
                # line, 10 lines a second each: p50 to the last peer 4.9-5.4 ms, where it
                # was 5.6-6.0 ms printing first). Not a cancel point: stopping here
                # would lose the event in hand.
                await trio.lowlevel.cancel_shielded_checkpoint()
                # peer.log, not the log replayed above: a pristine room that yields to a
                # neighbour's room gets a new log. Everything already waiting is written,
                # then flushed once: one syscall per burst.
                _emit("\n".join(_json_lines(peer, events, first=event)))
        finally:
            # Stopping: what is already waiting (our AWAY, say) is still printed.
            if lines := _json_lines(peer, events):
                _emit("\n".join(lines))


def _json_lines(
    peer: Peer, events: trio.MemoryReceiveChannel[PeerEvent], first: PeerEvent | None = None
) -> list[str]:
    """``first`` and every event already waiting, as JSON lines."""
    pending = [] if first is None else [first]
    while True:
        try:
            pending.append(events.receive_nowait())
        except (trio.WouldBlock, trio.ClosedResourceError, trio.EndOfChannel):
            break
    lines = []
    for event in pending:
        lines.append(dumps(peer_event_object(event, peer.log)))
        if (own_offence := _own_offence_in(peer, event)) is not None:
            lines.append(dumps({"event": "error", "reason": own_offence}))
    return lines


def _own_offence_in(peer: Peer, event: PeerEvent) -> str | None:
    """What we did, in words (Node.own_offence), when ``event`` is the proof of it."""
    if isinstance(event, EquivocationFound):
        offender = event.kept.sender_id
    elif isinstance(event, ClockLieFound):
        offender = event.message.sender_id
    else:
        return None
    return peer.node.own_offence() if offender == peer.node.identity.sender_id else None


async def _text_output(
    peer: Peer, nursery: trio.Nursery, session: _Session, web_url: str | None = None
) -> None:
    """A plain line-oriented chat for terminals without the full-screen UI."""
    async with peer.subscribe() as events:
        print(
            f"p2pchat {peer.name} at {peer.url} (id {peer.peer_id[:8]}). Type and press Enter.",
            flush=True,
        )
        if web_url:
            print(f"Open the chat in a browser: {web_url}", flush=True)
        for url in peer.unpinned:
            notice = f"* {url} names no peer id: trusting whoever answers there (trust on first use)"
            print(notice, flush=True)
        if (own_offence := peer.node.own_offence()) is not None:
            print(f"* error: {own_offence}", flush=True)
        nursery.start_soon(_send_stdin_lines, peer, session, False)
        printer = _TextPrinter(peer, shown=len(peer.log))
        try:
            async for event in events:
                await trio.lowlevel.cancel_shielded_checkpoint()  # (see _json_output)
                printer.show(event)
        finally:
            # Stopping: what is already waiting (our LEAVE or AWAY, say) is still printed.
            while True:
                try:
                    printer.show(events.receive_nowait())
                except (trio.WouldBlock, trio.ClosedResourceError, trio.EndOfChannel):
                    break


@dataclass
class _TextPrinter:
    """The line chat's output: one line (or a few) per event worth showing."""

    peer: Peer
    shown: int
    """Entries delivered before the next event."""

    def show(self, event: PeerEvent) -> None:
        log = self.peer.log
        if isinstance(event, MessageDelivered):
            # Inserted above entries delivered before it, not merely delivered before this
            # line is printed (a burst of our own lines is delivered at once).
            late = "" if event.index >= self.shown else f" (inserted at #{event.index})"
            self.shown += 1
            if not event.message.is_text:
                notice = membership_notice(log, event.message, with_decision=False)
                if notice:
                    print(f"* {printable(notice)}", flush=True)
                return
            message = event.message
            mark = " ∥" if event.concurrent else ""
            if message.sender_id in offenders(log.proofs):
                mark += " ≠"  # (its author was caught lying: see p2pchat.evidence)
            when = iso_time(message.sent_at_ms)[11:19]
            # Other people's text never reaches the terminal raw: escapes shown, lines indented.
            head = f"[{when}] {printable(message.name)}: "
            first, *rest = printable(message.text).split("\n")
            lines = [head + first, *(" " * len(head) + line for line in rest)]
            print("\n".join(lines) + mark + late, flush=True)
        elif isinstance(event, MembersChanged):
            print(f"* {printable(members_changed_notice(log, event.removed, event.joined))}", flush=True)
        elif isinstance(event, NeighbourUp):
            print(f"* connected to {printable(event.name)} ({event.url})", flush=True)
        elif isinstance(event, NeighbourDown):
            print(f"* disconnected: {event.reason}", flush=True)
        elif isinstance(event, DialFailed):
            print(f"* {dial_failure_text(event.url, event.reason, event.retry_in)}", flush=True)
        elif (own_offence := _own_offence_in(self.peer, event)) is not None:
            print(f"* error: {own_offence}", flush=True)


async def _send_stdin_lines(peer: Peer, session: _Session, as_json: bool = True) -> None:
    """Send each stdin line as a message and run the commands among them (see
    :mod:`p2pchat.commands`), in order. End of input leaves the peer running.

    Reading goes on while lines wait to be sent (before our admission, say): a
    ``/leave`` then ends the chat at once, and what was not sent is reported (at the
    end, see chat). Lines after a ``/leave`` are not read."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_work_through, peer, session, as_json)
        async for lines in _stdin_lines():
            texts = [line.decode("utf-8", errors="replace").rstrip("\r") for line in lines]
            texts = [text for text in texts if text]
            too_long = [text for text in texts if len(text.encode("utf-8")) > MAX_TEXT_BYTES]
            if too_long:
                _say_error(f"text is over {MAX_TEXT_BYTES} bytes", as_json, too_long)
                texts = [text for text in texts if len(text.encode("utf-8")) <= MAX_TEXT_BYTES]
            for text in texts:
                try:
                    item = parse_line(text)
                except ValueError as exc:
                    _say_error(str(exc), as_json)
                    continue
                session.to_do.append(item)
                if item == Command("leave"):
                    session.arrived.set()
                    if peer.node.why_not_writable() is not None:
                        _leave(session)  # (at once: the lines before it may never go out)
                    return
            session.arrived.set()


async def _work_through(peer: Peer, session: _Session, as_json: bool) -> None:
    """Send the waiting lines and run the waiting commands of ``session``, in order:
    the lines before a command go out before it runs."""
    while True:
        await session.arrived.wait()
        session.arrived = trio.Event()
        to_do = session.to_do
        while to_do:
            head = to_do[0]
            if isinstance(head, Command):
                to_do.popleft()
                _run_command(peer, session, head, as_json)
                continue
            texts = _leading_lines(to_do)
            if (reason := peer.node.why_not_writable()) is not None:
                _say_queued(texts, reason, as_json)
            try:
                await peer.send_many(texts)
            except OwnHistoryIncomplete as exc:
                # Say so and keep running: the repair comes from neighbours.
                _say_error(str(exc), as_json, texts)
            except trio.ClosedResourceError:
                return  # (the peer is stopping: what is left is reported as unsent)
            for _ in texts:
                to_do.popleft()


def _leading_lines(to_do: deque[str | Command]) -> list[str]:
    """The lines at the front of ``to_do``, up to its first command."""
    lines: list[str] = []
    for item in to_do:
        if not isinstance(item, str):
            break
        lines.append(item)
    return lines


def _run_command(peer: Peer, session: _Session, command: Command, as_json: bool) -> None:
    if command.name == "invite":
        _emit_invite(peer, as_json)
    elif command.name == "leave":
        _leave(session)
    elif command.name == "remove":
        try:
            peer.remove(member_called(peer.log, command.argument))
        except ValueError as exc:
            _say_error(f"/remove: {exc}", as_json)
        # (The proposal is an entry: its member event, "proposed", follows.)


def _leave(session: _Session) -> None:
    """End the chat by leaving the room for good (see chat)."""
    session.leaving = True
    session.stop.set()


def _say_queued(texts: list[str], reason: str, as_json: bool) -> None:
    if as_json:
        _emit(dumps({"event": "queued", "reason": reason, "texts": texts}))
    else:
        _emit(f"* queued ({len(texts)}): {reason}")


def _say_error(reason: str, as_json: bool, unsent: list[str] | None = None) -> None:
    if as_json:
        _emit(dumps({"event": "error", "reason": reason, **({"unsent": unsent} if unsent else {})}))
    else:
        _emit(f"* {reason}" + (f" ({len(unsent)} lines)" if unsent else ""))


def _emit_invite(peer: Peer, as_json: bool) -> None:
    try:
        url = peer.invite()
    except NotAMember as exc:
        _say_error(f"/invite: {exc}" if not as_json else str(exc), as_json)
        return
    _emit(dumps({"event": "invite", "url": url}) if as_json else f"* invite (one newcomer, 24 h): {url}")


async def _stdin_lines() -> AsyncIterator[list[bytes]]:
    """Batches of standard-input lines (all that one read brought), from a worker thread.

    ``os.read`` rather than ``sys.stdin``: an abandoned thread blocked inside a
    buffered reader holds its lock, and the interpreter cannot exit cleanly.
    """
    pending = b""
    while True:
        chunk = await trio.to_thread.run_sync(os.read, 0, 65536, abandon_on_cancel=True)
        if not chunk:
            if pending:
                yield [pending]
            return
        *lines, pending = (pending + chunk).split(b"\n")
        if lines:
            yield lines


# log -----------------------------------------------------------------------------------


def print_log(data_dir: Path, room: str | None, *, as_json: bool) -> int:
    try:
        store = Store(data_dir, read_only=True)
    except FileNotFoundError as exc:
        print(
            f"p2pchat log: {exc}.\nGive the directory a peer ran with: --data DIR, or --name NAME.",
            file=sys.stderr,
        )
        return 1
    except StoreFormatError as exc:
        print(f"p2pchat log: {exc}", file=sys.stderr)
        return 1
    with store:
        room_id = store.last_room() if room is None else store.find_room(room)
        if room_id is None:
            print(
                f"p2pchat log: no room {room or ''} in {data_dir} (see: p2pchat rooms --data DIR)",
                file=sys.stderr,
            )
            return 1
        log = restore_log(store, room_id)
    for index, message in enumerate(log):
        obj = logged_message_object(log, index)
        if as_json:
            print(json.dumps(obj, ensure_ascii=False))
        elif not message.is_text:
            # As the chat shows it ("bob joined"); a bare answer to a change has no notice.
            what = printable(obj.get("notice") or f"{obj['name']} {obj['action']}")
            print(f"{index:5d} L{message.lamport:<5d} {obj['sent_at']} * {what}")
        else:
            print(
                log_line(
                    index,
                    message.lamport,
                    obj["sent_at"],
                    message.name,
                    message.text,
                    obj["concurrent"],
                    disputed=obj.get("disputed", False),
                )
            )
    _print_proofs(log, as_json=as_json)
    return 0


def _print_proofs(log: OrderedLog, *, as_json: bool) -> None:
    """After the entries, the proofs kept against members (see p2pchat.evidence)."""
    if as_json:
        for obj in proof_objects(log):
            print(json.dumps(obj, ensure_ascii=False))
        return
    for proof in log.proofs:
        offender = offender_of(proof)
        who = printable(log.roster.name_of(offender) or "")
        print(f"    ! {who} ({short_id(offender)}) {offence(proof)}: proof kept, expelled")


def log_line(
    index: int, lamport: int, sent_at: str, name: str, text: str, concurrent: bool, *, disputed: bool = False
) -> str:
    """One message of ``p2pchat log``: control characters escaped, lines of a
    multi-line message indented under the first so the columns hold; ∥ marks a line
    written concurrently, ≠ one whose author was caught lying (others may show it
    otherwise)."""
    head = f"{index:5d} L{lamport:<5d} {sent_at} {printable(name)}: "
    first, *rest = printable(text).split("\n")
    mark = (" ∥" if concurrent else "") + (" ≠" if disputed else "")
    indent = " " * (len(f"{index:5d} L{lamport:<5d} {sent_at} ") + 2)
    return "\n".join([head + first, *(indent + line for line in rest)]) + mark


def print_rooms(data_dir: Path) -> int:
    try:
        store = Store(data_dir, read_only=True)
    except (FileNotFoundError, StoreFormatError) as exc:
        print(f"p2pchat: {exc}", file=sys.stderr)
        return 1
    with store:
        rooms = store.rooms()
    for room in rooms:
        used = iso_time(room.last_used)[:19].replace("T", " ") if room.last_used else "never opened"
        print(f"{room.room_id.hex()}  {room.entries:7d} entries  last used {used}  {room.name}")
    return 0


if __name__ == "__main__":
    run()
