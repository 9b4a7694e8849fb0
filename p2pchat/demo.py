"""``p2pchat demo``: several real peers on loopback, watched as they agree on one order.

N peers run in this process, each with its own WebSocket listener, connected in
a line, ring or random graph. Every outgoing frame is held back a random delay
(and optionally dropped), so the peers receive messages in different orders.
In rounds, several peers write *at the same moment*, so some messages are
concurrent. At the end a table shows, per peer, what it holds, a digest of its
order, how much is still tentative and how often a late message had to be
inserted above what was already on screen -- then a verdict: every peer holds
the identical order, or not. ``--diagram`` draws the run as an SVG
space-time diagram.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TextIO

import trio

from .arguments import new_file, whole_number
from .diagram import Arrival, Send, render_svg
from .identity import Identity
from .message import MessageId
from .node import NodeConfig, text_count
from .peer import EntriesVoided, MessageDelivered, Peer, PeerConfig, PeerEvent, open_peer

__all__ = ["DemoObserver", "DemoResult", "add_demo_parser", "run_demo", "run_demo_command"]

NAMES = [
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "niaj",
    "olivia",
    "peggy",
    "rupert",
    "sybil",
    "trent",
    "victor",
    "walter",
    "yolanda",
]
ADMISSION_PATIENCE = 60.0
"""Seconds the demo waits for every peer's admission before it starts writing anyway."""
LINES = [
    "hi all",
    "anyone here?",
    "lunch at noon?",
    "+1",
    "sounds good",
    "I'll bring snacks",
    "wait, which room?",
    "the big one",
    "on my way",
    "running late",
    "ok!",
    "see you there",
]


class DemoObserver(Protocol):
    """Follows a run as it happens (``demo --web`` draws it live)."""

    def started(self, peers: list[Peer]) -> None:
        """The peers are connected; lane ``i`` is ``peers[i]``; time 0 is now."""

    def peer_event(self, lane: int, time: float, event: PeerEvent) -> None:
        """Peer ``lane`` published ``event`` at ``time`` seconds into the run."""


@dataclass
class _Watch:
    """What one peer saw: every delivery, with when and where it was inserted."""

    peer: Peer
    deliveries: list[tuple[float, MessageId, bool]] = field(default_factory=list)
    """(when, which message, whether it was inserted above an entry already shown)."""
    inserted_above: int = 0
    entries_seen: int = 0
    """Entries delivered so far (chat lines and membership entries): the log's length."""
    lane: int = 0
    observer: DemoObserver | None = None


@dataclass
class DemoResult:
    identical: bool
    messages: int
    rows: list[dict[str, Any]]
    digest: str


def add_demo_parser(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="run several peers here and watch them agree",
        description="Run N real peers in this process on loopback WebSockets, every link slowed by a "
        "random delay, several peers writing at the same moment; then show that every peer holds "
        "the identical order. Exit code 0 only then.",
        epilog="examples:\n  p2pchat demo\n  p2pchat demo --peers 4 --messages 4 --seed 7 "
        "--diagram run.svg\n  p2pchat demo --topology line --loss 0.1",
    )
    demo.add_argument("--peers", type=whole_number(2, len(NAMES)), default=5, help="how many peers")
    demo.add_argument("--messages", type=whole_number(1, 1000), default=6, help="messages per peer")
    demo.add_argument("--topology", choices=["line", "ring", "random"], default="ring")
    demo.add_argument(
        "--delay",
        type=delay_range,
        default=(20.0, 250.0),
        metavar="MIN-MAX",
        help="ms per link (default: 20-250)",
    )
    demo.add_argument(
        "--loss", type=loss_fraction, default=0.0, metavar="P", help="fraction of frames dropped, 0 <= P < 1"
    )
    demo.add_argument(
        "--seed",
        type=int,
        default=None,
        help="repeat the script of a run: the random topology, who writes in each round and "
        "what, whether the room goes quiet after it, the pauses, and the peers' ids. Not the "
        "network: each frame's delay (and whether it is dropped) is drawn afresh, and "
        "arrivals over real sockets race, so what a writer had seen, hence the Lamport "
        "stamps, the final order and its digest, can differ from run to run (within a run "
        "every peer still holds the same order)",
    )
    demo.add_argument(
        "--diagram", type=new_file, metavar="FILE.svg", help="write an SVG space-time diagram here"
    )
    demo.add_argument(
        "--web",
        nargs="?",
        const="127.0.0.1:0",
        metavar="HOST:PORT",
        help="draw the run live in a browser (prints the URL; the run starts when the page opens)",
    )


def loss_fraction(text: str) -> float:
    """A drop rate: at least 0 and below 1 (at 1 nothing would ever arrive)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction like 0.1, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(
            f"must be at least 0 and below 1 (0.1 drops one frame in ten), got {text}"
        )
    return value


def delay_range(text: str) -> tuple[float, float]:
    low, sep, high = text.partition("-")
    try:
        lo, hi = float(low), float(high if sep else low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN-MAX in ms, got {text!r}") from None
    if not 0 <= lo <= hi:
        raise argparse.ArgumentTypeError("need 0 <= MIN <= MAX")
    return lo, hi


def _joins(topology: str, peers: int, rng: random.Random) -> list[list[int]]:
    """For each peer, the earlier peers it dials (the ring's closing link: last dials first)."""
    joins: list[list[int]] = [[i - 1] if i else [] for i in range(peers)]
    if topology == "ring" and peers > 2:
        joins[-1].append(0)
    elif topology == "random":
        for i in range(2, peers):
            extra = rng.randrange(i - 1)
            if rng.random() < 0.5 and extra not in joins[i]:
                joins[i].append(extra)
    return joins


def _identity(seed: int, name: str) -> Identity:
    """A seeded run's key pair for ``name``: the same peer id in every run with that seed,
    so that concurrent messages (same stamp) are ordered by the same tie-break."""
    return Identity(hashlib.sha256(f"p2pchat demo {seed} {name}".encode()).digest())


def _node_config(loss: float) -> NodeConfig:
    """The peers' protocol settings. With ``loss``, frames vanish inside open links (TCP
    never loses a frame without closing its connection, so the defaults only back that
    up with a slow anti-entropy round every few seconds and whole heads every ten): the
    backstops that then do all the repair run every half second and second instead."""
    if not loss:
        return NodeConfig(heartbeat_interval=0.3)
    return NodeConfig(heartbeat_interval=0.3, anti_entropy_interval=0.5, keepalive_interval=1.0)


async def run_demo(
    *,
    peers: int = 5,
    messages: int = 6,
    topology: str = "ring",
    delay_ms: tuple[float, float] = (20.0, 250.0),
    loss: float = 0.0,
    seed: int | None = None,
    diagram: Path | None = None,
    out: TextIO = sys.stdout,
    observer: DemoObserver | None = None,
) -> DemoResult:
    rng = random.Random(seed)
    if peers < 2 or peers > len(NAMES):
        raise ValueError(f"--peers must be between 2 and {len(NAMES)}")
    config = PeerConfig(
        node=_node_config(loss),
        target_connections=0,
        link_delay=(delay_ms[0] / 1000, delay_ms[1] / 1000),
        link_loss=loss,
    )
    joins = _joins(topology, peers, rng)
    names = NAMES[:peers]
    print(
        f"Starting {peers} peers ({topology}), {delay_ms[0]:g}-{delay_ms[1]:g} ms per link, "
        f"loss {loss:g} ...",
        file=out,
    )
    async with AsyncExitStack() as stack:
        running: list[Peer] = []
        for index, name in enumerate(names):
            urls = [url for j in joins[index] if (url := running[j].url)]
            identity = None if seed is None else _identity(seed, name)
            opened = open_peer(name, join=urls, config=config, identity=identity)
            running.append(await stack.enter_async_context(opened))
        degree = [len(joins[i]) + sum(i in js for js in joins) for i in range(peers)]
        with trio.fail_after(15):
            for peer, wanted in zip(running, degree, strict=True):
                await peer.wait_connected(wanted)
        for peer in running:
            print(f"  {peer.name:<8} {peer.url}  id {peer.peer_id[:8]}", file=out)
        await _wait_admitted(running, out)
        start = trio.current_time()
        if observer is not None:
            observer.started(running)
        watches = [_Watch(peer, lane=lane, observer=observer) for lane, peer in enumerate(running)]
        async with trio.open_nursery() as nursery:
            for watch in watches:
                await nursery.start(_watch, watch, start)
            total = peers * messages
            await _write_in_rounds(running, messages, rng, out)
            await _wait_for_everything(watches, total, out)
            nursery.cancel_scope.cancel()
        result = _report(watches, total, out)
        if diagram is not None:
            diagram.write_text(_diagram(watches, start, names), encoding="utf-8")
            print(f"Space-time diagram written to {diagram}", file=out)
        return result


async def _wait_admitted(peers: list[Peer], out: TextIO) -> None:
    """Until every peer is a member of the room (an admission is a membership change every
    member answers, so under loss it takes a few repairs): a peer not admitted yet could
    not write, and would hold up every quiet pause of the rounds."""
    began = trio.current_time()
    with trio.move_on_after(ADMISSION_PATIENCE):
        for peer in peers:
            _live(out, f"admitting {peer.name} ...")
            await peer.wait_admitted()
    _live(out, "")
    admitted = sum(peer.is_member for peer in peers)
    print(f"  {admitted} of {len(peers)} peers admitted in {trio.current_time() - began:.1f} s", file=out)


async def _watch(watch: _Watch, start: float, task_status: trio.TaskStatus[None]) -> None:
    async with watch.peer.subscribe() as events:
        watch.entries_seen = len(watch.peer.log)
        task_status.started()
        async for event in events:
            if watch.observer is not None:
                watch.observer.peer_event(watch.lane, trio.current_time() - start, event)
            if isinstance(event, EntriesVoided):
                # (They left the log: a line delivered after them is not above them.)
                watch.entries_seen -= len(event.messages)
            if not isinstance(event, MessageDelivered):
                continue
            # Inserted above something already shown? Counted from the entries delivered
            # so far (the log itself may hold more by the time this task runs).
            above = event.index < watch.entries_seen
            watch.entries_seen += 1
            if event.message.is_text:
                # (Membership entries, the room's genesis and admissions, are not drawn.)
                watch.inserted_above += above
                watch.deliveries.append((trio.current_time() - start, event.message.id, above))


async def _write_in_rounds(peers: list[Peer], messages: int, rng: random.Random, out: TextIO) -> None:
    """Rounds of writes. Often several peers write at the very same moment (concurrent
    messages); after some rounds the room goes quiet until everyone has seen
    everything, so the next messages are written knowing all before them."""
    left = {peer.name: messages for peer in peers}
    sent = 0
    round_number = 0
    while any(left.values()):
        round_number += 1
        candidates = [p for p in peers if left[p.name]]
        size = 1 if rng.random() < 0.45 else rng.randint(2, len(peers))
        writers = rng.sample(candidates, min(len(candidates), size))
        if len(writers) == 1:
            await _quiet(peers, sent)  # a lone writer has seen everything before it ...
        async with trio.open_nursery() as nursery:
            for peer in writers:
                left[peer.name] -= 1
                nursery.start_soon(peer.send, rng.choice(LINES))
        sent += len(writers)
        together = "wrote at once" if len(writers) > 1 else "wrote"
        _live(out, f"round {round_number}: {', '.join(p.name for p in writers)} {together}")
        if len(writers) == 1 or rng.random() < 0.5:
            await _quiet(peers, sent)  # ... and everyone sees it before the next round
        await trio.sleep(rng.uniform(0.05, 0.3))
    _live(out, "")
    print(f"  {round_number} rounds of writing done", file=out)


async def _quiet(peers: list[Peer], sent: int) -> None:
    """Wait (a little) until every peer holds everything written so far."""
    with trio.move_on_after(5):
        for peer in peers:
            await peer.wait_texts(sent)


async def _wait_for_everything(watches: list[_Watch], total: int, out: TextIO) -> None:
    """Until every peer holds every message and, if it comes soon, every entry (chat lines
    and the room's membership entries alike) is stable and the same everywhere."""
    with trio.move_on_after(20):
        while True:
            held = [text_count(w.peer.log) for w in watches]
            unstable = [len(w.peer.log) - w.peer.log.stable_count for w in watches]
            _live(out, f"held {held}  tentative {unstable}")
            done = all(h == total for h in held) and not any(unstable)
            if done and len({_digest(w.peer) for w in watches}) == 1:
                break
            await trio.sleep(0.1)
    _live(out, "")
    print(f"  held {[text_count(w.peer.log) for w in watches]}", file=out)


def _live(out: TextIO, text: str) -> None:
    """A progress line that rewrites itself on a terminal (and stays quiet elsewhere)."""
    if out.isatty():
        # Carriage return, the text, then erase the rest of the line (an empty text
        # leaves a clean line for what is printed next).
        print(f"\r  {text[:76]}\x1b[K" if text else "\r\x1b[K", end="", file=out, flush=True)


def _digest(peer: Peer) -> str:
    """A short hash of the whole log's order (membership entries included)."""
    hasher = hashlib.sha256()
    for message in peer.messages():
        hasher.update(message.sender_id + message.seq.to_bytes(8, "big"))
    return hasher.hexdigest()[:12]


def _report(watches: list[_Watch], total: int, out: TextIO) -> DemoResult:
    rows: list[dict[str, Any]] = []
    print(
        f"\n  {'peer':<8} {'held':>5} {'order digest':>13} {'tentative':>9} {'arrived out of order':>21}",
        file=out,
    )
    for watch in watches:
        log = watch.peer.log
        row = {
            "peer": watch.peer.name,
            "held": text_count(log),
            "entries": len(log),
            "digest": _digest(watch.peer),
            "tentative": len(log) - log.stable_count,
            "inserted_above": watch.inserted_above,
        }
        rows.append(row)
        print(
            f"  {row['peer']:<8} {row['held']:>5} {row['digest']:>13} {row['tentative']:>9} "
            f"{row['inserted_above']:>21}",
            file=out,
        )
    digests = {str(row["digest"]) for row in rows}
    identical = len(digests) == 1 and all(int(row["held"]) == total for row in rows)
    if identical:
        room = int(rows[0]["entries"]) - total
        verdict = (
            f"VERDICT: OK - all {len(rows)} peers hold the identical order of {total} messages "
            f"and {room} membership entries (digest {rows[0]['digest']}), though "
            f"{sum(r['inserted_above'] for r in rows)} deliveries arrived out of order"
        )
    else:
        verdict = f"VERDICT: FAILED - peers disagree ({len(digests)} different orders)"
    print(f"\n{verdict}", file=out)
    return DemoResult(identical, total, rows, str(rows[0]["digest"]) if rows else "")


def _diagram(watches: list[_Watch], start: float, names: list[str]) -> str:
    lane_of = {w.peer.node.identity.sender_id: lane for lane, w in enumerate(watches)}
    final = [m for m in watches[0].peer.messages() if m.is_text]
    log = watches[0].peer.log
    index_of = {m.id: i for i, m in enumerate(final)}
    sends: list[Send | None] = [None] * len(final)
    arrivals: list[Arrival] = []
    for lane, watch in enumerate(watches):
        for when, message_id, above in watch.deliveries:
            i = index_of.get(message_id)
            if i is None:
                continue
            message = final[i]
            if lane_of[message.sender_id] == lane:
                sends[i] = Send(lane, when, message.lamport, message.text, log.is_concurrent(message_id))
            else:
                # Inserted above something already shown: it arrived out of order here.
                arrivals.append(Arrival(i, lane, when, out_of_order=above))
    complete = [s if s is not None else Send(0, 0.0, 0, "?", False) for s in sends]
    title = f"p2pchat demo: {len(watches)} peers, {len(final)} messages, one order"
    return render_svg(names, complete, arrivals, list(range(len(final))), title)


def demo_options(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`run_demo`'s keyword arguments from the ``demo`` command's options."""
    return {
        "peers": args.peers,
        "messages": args.messages,
        "topology": args.topology,
        "delay_ms": args.delay,
        "loss": args.loss,
        "seed": args.seed,
        "diagram": args.diagram,
    }


def run_demo_command(args: argparse.Namespace) -> int:
    if getattr(args, "web", None) is not None:
        from .web.demo import run_web_demo

        return trio.run(run_web_demo, args)
    started = time.monotonic()
    result = trio.run(partial(run_demo, **demo_options(args)))
    print(f"({time.monotonic() - started:.1f} s)")
    return 0 if result.identical else 1
