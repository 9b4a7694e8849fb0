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
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import trio

from . import __version__
from .jsonlines import (
    dumps,
    iso_time,
    logged_message_object,
    peer_event_object,
    ready_object,
    statistics_object,
)
from .log import NotAMember, OwnHistoryIncomplete
from .peer import (
    MessageDelivered,
    NeighbourDown,
    NeighbourUp,
    NoSuchRoom,
    Peer,
    PeerConfig,
    default_data_dir,
    open_peer,
    restore_log,
)
from .store import Store, StoreFormatError
from .transport import check_url, parse_host_port

__all__ = ["main", "run"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="p2pchat", description="Serverless group chat.")
    parser.add_argument("--version", action="version", version=f"p2pchat {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    chat = commands.add_parser("chat", help="run a peer and chat")
    chat.add_argument("--name", required=True, help="display name (not unique)")
    chat.add_argument("--listen", default="127.0.0.1:0", type=_host_port, help="HOST:PORT (port 0 picks one)")
    chat.add_argument(
        "--join", action="append", default=[], type=_ws_url, help="a peer's ws:// URL (repeatable)"
    )
    chat.add_argument("--data", type=Path, help="data directory (default: per-user, per-name)")
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
        type=int,
        default=PeerConfig().target_connections,
        help="dial addresses learned from neighbours while fewer than this are connected (0: only --join)",
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

    log = commands.add_parser("log", help="print the stored ordered log of a room")
    log.add_argument("--data", type=Path, required=True, help="the peer's data directory")
    log.add_argument("--room", metavar="ID", help="which room (hex id or prefix; default: the last used)")
    log.add_argument("--json", action="store_true", help="one JSON object per line")

    rooms = commands.add_parser("rooms", help="list the rooms stored in a data directory")
    rooms.add_argument("--data", type=Path, required=True, help="the peer's data directory")

    from .sim_cli import add_sim_parser

    add_sim_parser(commands)
    from .bench import add_bench_parser

    add_bench_parser(commands)
    from .demo import add_demo_parser

    add_demo_parser(commands)
    return parser


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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if args.command == "chat":
        if not args.json and sys.stdin.isatty() and sys.stdout.isatty():
            from .tui import run_tui

            data_dir = args.data or default_data_dir(args.name)
            config = peer_config(args)
            return run_tui(args.name, data_dir, args.listen, args.join, config, args.web, args.private)
        failures: list[BaseException] = []
        try:
            return trio.run(chat, args)
        except* (StoreFormatError, NoSuchRoom) as group:
            failures.extend(group.exceptions)
        for exc in failures:
            print(f"p2pchat: {exc}", file=sys.stderr)
        return 1
    if args.command == "log":
        return print_log(args.data, args.room, as_json=args.json)
    if args.command == "rooms":
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
    """Console-script entry point."""
    sys.exit(main())


# chat ----------------------------------------------------------------------------------


async def chat(args: argparse.Namespace) -> int:
    data_dir = args.data or default_data_dir(args.name)
    output = _json_output if args.json else _text_output
    config = peer_config(args)
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
            async with trio.open_nursery() as nursery:
                web_url = await _start_web(args, peer, data_dir, nursery)
                nursery.start_soon(output, peer, nursery, web_url)
                async for _ in signals:
                    break
                nursery.cancel_scope.cancel()
            if args.json:
                _emit(dumps(statistics_object(peer)))
    return 0


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
    )


def _emit(line: str) -> None:
    try:
        print(line, flush=True)
    except BrokenPipeError:
        raise SystemExit(0) from None


async def _json_output(peer: Peer, nursery: trio.Nursery, web_url: str | None = None) -> None:
    async with peer.subscribe() as events:
        _emit(dumps({**ready_object(peer), "web": web_url} if web_url else ready_object(peer)))
        log = peer.log
        for index in range(len(log)):
            _emit(dumps({**logged_message_object(log, index), "replayed": True}))
        nursery.start_soon(_send_stdin_lines, peer)
        async for event in events:
            # peer.log, not the log replayed above: a pristine room that yields to a
            # neighbour's room gets a new log. Everything already waiting is written,
            # then flushed once: one syscall per burst.
            lines = [dumps(peer_event_object(event, peer.log))]
            while True:
                try:
                    lines.append(dumps(peer_event_object(events.receive_nowait(), peer.log)))
                except trio.WouldBlock:
                    break
            _emit("\n".join(lines))


async def _text_output(peer: Peer, nursery: trio.Nursery, web_url: str | None = None) -> None:
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
        nursery.start_soon(_send_stdin_lines, peer, False)
        async for event in events:
            if isinstance(event, MessageDelivered) and not event.message.is_text:
                obj = peer_event_object(event, peer.log)
                print(f"* {obj['name']} {obj['action']}", flush=True)
            elif isinstance(event, MessageDelivered):
                message = event.message
                late = "" if event.index == len(peer.log) - 1 else f" (inserted at #{event.index})"
                mark = " ∥" if event.concurrent else ""
                when = iso_time(message.sent_at_ms)[11:19]
                print(f"[{when}] {message.name}: {message.text}{mark}{late}", flush=True)
            elif isinstance(event, NeighbourUp):
                print(f"* connected to {event.name} ({event.url})", flush=True)
            elif isinstance(event, NeighbourDown):
                print(f"* disconnected: {event.reason}", flush=True)


async def _send_stdin_lines(peer: Peer, as_json: bool = True) -> None:
    """Send each stdin line as a message. End of input leaves the peer running."""
    async for lines in _stdin_lines():
        texts = [line.decode("utf-8", errors="replace").rstrip("\r") for line in lines]
        texts = [text for text in texts if text]
        if "/invite" in texts:
            # Not a chat line: print an invite (a JSON event with --json).
            texts = [text for text in texts if text != "/invite"]
            _emit_invite(peer, as_json)
        if not texts:
            continue
        try:
            await peer.send_many(texts)
        except OwnHistoryIncomplete as exc:
            # Say so and keep running: the repair comes from neighbours.
            _emit(dumps({"event": "error", "reason": str(exc), "unsent": texts}))


def _emit_invite(peer: Peer, as_json: bool) -> None:
    try:
        url = peer.invite()
    except NotAMember as exc:
        _emit(dumps({"event": "error", "reason": str(exc)}) if as_json else f"* /invite: {exc}")
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
    except (FileNotFoundError, StoreFormatError) as exc:
        print(f"p2pchat: {exc}", file=sys.stderr)
        return 1
    with store:
        room_id = store.last_room() if room is None else store.find_room(room)
        if room_id is None:
            print(
                f"p2pchat: no room {room or ''} in {data_dir} (see: p2pchat rooms --data DIR)",
                file=sys.stderr,
            )
            return 1
        log = restore_log(store, room_id)
    for index, message in enumerate(log):
        obj = logged_message_object(log, index)
        if as_json:
            print(json.dumps(obj, ensure_ascii=False))
        elif not message.is_text:
            print(f"{index:5d} L{message.lamport:<5d} {obj['sent_at']} * {obj['name']} {obj['action']}")
        else:
            mark = " ∥" if obj["concurrent"] else ""
            print(f"{index:5d} L{message.lamport:<5d} {obj['sent_at']} {message.name}: {message.text}{mark}")
    return 0


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
