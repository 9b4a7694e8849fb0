"""Benchmark of the pure core: signing, wire encoding, decoding, verification, the ordered log.

Run it (see benchmarks/README.md)::

    python benchmarks/core_bench.py                 # 100k messages from 10 senders
    python benchmarks/core_bench.py --messages 20000 --senders 25 --seed 7

What it does:

1. Plans a realistic causal history in a room whose members are the senders
   (founded as in ``benchroom.py``): at each step a random sender (some talk more
   than others) writes a message; before writing it catches up with each other
   member with probability ``--sync``, i.e. delivers everything that member had
   delivered (the union of causally closed sets is causally closed, so this is
   always a valid state). Stamps follow DESIGN.md rule 4 exactly (lamport = 1 +
   largest delivered stamp) and each message carries the vector-clock entries that
   changed since its sender's previous message, just like ``OrderedLog.compose``
   (a sender's first message also names the room's founding entries).
2. (a) encode+sign: ``Message.create`` + ``wire.encode_frame`` in batches of 100.
3. (b) decode+verify: ``wire.decode_frame`` of those batch frames + ``Message.verify``.
4. (c) ``OrderedLog.receive`` of every message, in a random order, into a fresh log
   holding the room's founding entries, once as is (the log verifies each signature itself) and once with
   ``Message.verify`` replaced by ``lambda self, room_id: True`` for the duration of the run,
   which isolates the log's own cost (the signatures were checked in (b)).
5. Wire size of one message with a 50-byte text.

The result is checked (every message delivered, nothing refused, the log in
``(lamport, sender_id)`` order) so a broken core cannot produce a fast number.
This is a benchmark, not a test; it is not collected by pytest.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from benchroom import BenchRoom, found_room

from p2pchat import wire
from p2pchat.identity import Identity
from p2pchat.log import OrderedLog, ReceiptStatus
from p2pchat.message import LINK_SIZE, Change, EntryKind, Message

T = TypeVar("T")
BATCH = 100
START_MS = 1_750_000_000_000
_VOCABULARY = """
the a to and of is in it you that for on was with he as I his they be at one have this from
or had by hot word but what some we can out other were all there when up use your how said
an each she which do their time if will way about many then them write would like so these
her long make thing see him two has look more day could go come did number sound no most
people my over know water than call first who may down side been now find
"""
WORDS = _VOCABULARY.split()


@dataclass(frozen=True, slots=True)
class Planned:
    """The fields of one message to create, with stamps already computed."""

    sender: int
    seq: int
    lamport: int
    sent_at_ms: int
    name: str
    text: str
    deps: dict[bytes, int]


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    count: int
    seconds: float

    def render(self) -> str:
        rate = self.count / self.seconds if self.seconds else float("inf")
        micros = self.seconds / self.count * 1e6 if self.count else 0.0
        return f"{self.label:<58} {self.count:>9,} {self.seconds:>9.2f} {rate:>12,.0f} {micros:>9.1f}"


def random_text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 30)))


def plan_history(
    count: int, ids: Sequence[bytes], rng: random.Random, sync: float, room: BenchRoom
) -> list[Planned]:
    """A causal history of ``count`` messages from ``len(ids)`` senders (see module doc)."""
    n = len(ids)
    delivered = [[0] * n for _ in range(n)]  # delivered[s][k]: highest seq of k that s delivered
    sent_vector = [[0] * n for _ in range(n)]  # delivered[s] when s last sent
    clock = [room.base] * n  # Lamport clock of each sender: largest delivered stamp
    lamports: list[list[int]] = [[] for _ in range(n)]  # lamports[k][q-1]: stamp of (k, q)
    weights = [rng.uniform(0.2, 1.0) for _ in range(n)]  # some members talk more
    plan: list[Planned] = []
    now = START_MS
    for _ in range(count):
        s = rng.choices(range(n), weights)[0]
        for other in range(n):
            if other == s or rng.random() >= sync:
                continue
            mine, theirs = delivered[s], delivered[other]
            for k in range(n):
                if theirs[k] > mine[k]:
                    mine[k] = theirs[k]
                    clock[s] = max(clock[s], lamports[k][mine[k] - 1])
        seq = delivered[s][s] + 1
        lamport = clock[s] + 1
        deps = {ids[k]: delivered[s][k] for k in range(n) if k != s and delivered[s][k] > sent_vector[s][k]}
        if seq == 1:
            deps.update(room.first_deps())
        now += rng.randint(1, 2_000)
        plan.append(Planned(s, seq, lamport, now, f"member-{s}", random_text(rng), deps))
        lamports[s].append(lamport)
        delivered[s][s] = seq
        clock[s] = lamport
        sent_vector[s] = list(delivered[s])
    return plan


def timed(label: str, count: int, work: Callable[[], T]) -> tuple[Row, T]:
    print(f"running: {label.strip()} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    result = work()
    return Row(label, count, time.perf_counter() - start), result


@contextlib.contextmanager
def verification_stubbed() -> Iterator[None]:
    """Make ``Message.verify`` return True (pre-verified messages) inside the block."""
    original = Message.verify
    Message.verify = lambda self, room_id: True  # type: ignore[method-assign]
    try:
        yield
    finally:
        Message.verify = original  # type: ignore[method-assign]


def insert_all(room: BenchRoom, messages: Sequence[Message]) -> OrderedLog:
    log = room.replica()
    for message in messages:
        if log.receive(message).status is not ReceiptStatus.NEW:
            raise AssertionError(f"{message!r} was not accepted")
    return log


def check_log(log: OrderedLog, count: int) -> None:
    """``count`` chat messages delivered after the founding entries, nothing held or refused."""
    texts = sum(m.kind is EntryKind.TEXT for m in log)
    if texts != count or log.held_count or log.blocked_senders():
        raise AssertionError(f"log holds {texts} messages delivered, {log.held_count} waiting")
    keys = [m.key for m in log]
    if keys != sorted(keys):
        raise AssertionError("log is not in (lamport, sender_id) order")


def wire_sizes(identity: Identity, others: Sequence[bytes], room_id: bytes) -> list[tuple[str, int]]:
    text = "x" * 50
    fields = {
        "seq": 4_321,
        "lamport": 98_765,
        "sent_at_ms": START_MS,
        "name": "alice",
        "room_id": room_id,
        "previous": bytes(LINK_SIZE),
    }
    unchanged = Message.create(identity, text=text, deps={}, **fields)  # type: ignore[arg-type]
    one = Message.create(identity, text=text, deps={others[0]: 77}, **fields)  # type: ignore[arg-type]
    every = Message.create(
        identity,
        text=text,
        deps={s: 4_000 for s in others},
        **fields,  # type: ignore[arg-type]
    )
    admit = Message.create(
        identity,
        text="",
        deps={others[0]: 77},
        kind=EntryKind.CHANGE,
        change=Change(0, 0, ((others[0], "bob"),)),
        **fields,  # type: ignore[arg-type]
    )
    batch = wire.encode_frame(wire.Messages((one,) * BATCH))
    return [
        ("payload, no changed vector-clock entry (deps = {})", len(unchanged.payload)),
        ("payload, 1 changed vector-clock entry", len(one.payload)),
        (f"payload, {len(others)} changed vector-clock entries", len(every.payload)),
        ("CHANGE entry payload admitting one (name 'bob'), 1 changed entry", len(admit.payload)),
        ("signature", len(one.signature)),
        ("one message alone in a MESSAGES frame (1 entry)", len(wire.encode_frame(wire.Messages((one,))))),
        (f"per message in a MESSAGES frame of {BATCH} (1 entry)", round(len(batch) / BATCH)),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000, help="messages (default 100000)")
    parser.add_argument("--senders", type=int, default=10, help="senders (default 10)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--sync",
        type=float,
        default=0.5,
        help="before writing, a sender catches up with each other member with this "
        "probability (default 0.5); lower means more concurrent messages",
    )
    args = parser.parse_args(argv)
    if args.messages < 1 or args.senders < 2:
        parser.error("need at least 1 message and 2 senders")

    rng = random.Random(args.seed)
    identities = [Identity(rng.randbytes(32)) for _ in range(args.senders)]
    ids = [i.sender_id for i in identities]
    n = args.messages
    room = found_room(ids)

    print(
        f"p2pchat core benchmark: {n:,} messages, {args.senders} senders, seed {args.seed}, sync {args.sync}"
    )
    print(f"python {sys.version.split()[0]} on {sys.platform}")
    plan_start = time.perf_counter()
    plan = plan_history(n, ids, rng, args.sync, room)
    deps_entries = sum(len(p.deps) for p in plan)
    print(
        f"planned causal history in {time.perf_counter() - plan_start:.1f} s: "
        f"{deps_entries / n:.2f} vector-clock entries per message, "
        f"highest lamport {max(p.lamport for p in plan):,}"
    )

    # (a) encode + sign ---------------------------------------------------------------
    def encode_and_sign() -> tuple[list[Message], list[bytes]]:
        messages: list[Message] = []
        frames: list[bytes] = []
        links = [b""] * len(identities)  # each sender's link to its previous message
        hashes = room.first_links()  # (the founder's, then every entry's by (sender, seq))
        versions: dict[tuple[bytes, int], bytes] = {(s, room.founder_seq): h for s, h in hashes.items()}
        for start in range(0, n, BATCH):
            batch = []
            for p in plan[start : start + BATCH]:
                message = Message.create(
                    identities[p.sender],
                    seq=p.seq,
                    lamport=p.lamport,
                    sent_at_ms=p.sent_at_ms,
                    name=p.name,
                    text=p.text,
                    deps=p.deps,
                    room_id=room.room_id,
                    previous=links[p.sender],
                    links={sender: versions[sender, seq] for sender, seq in p.deps.items()},
                )
                links[p.sender] = versions[message.sender_id, message.seq] = message.entry_hash()
                batch.append(message)
            messages.extend(batch)
            frames.append(wire.encode_frame(wire.Messages(tuple(batch))))
        return messages, frames

    row_a, (messages, frames) = timed("(a) encode+sign: Message.create + encode_frame", n, encode_and_sign)
    row_sign, _ = timed(
        "    of which Ed25519 signing alone",
        n,
        lambda: [
            identities[p.sender].sign(m.signed_bytes(room.room_id))
            for p, m in zip(plan, messages, strict=True)
        ],
    )

    # (b) decode + verify -------------------------------------------------------------
    def decode_and_verify() -> int:
        verified = 0
        for data in frames:
            frame = wire.decode_frame(data)
            assert isinstance(frame, wire.Messages)
            for message in frame.messages:
                if not message.verify(room.room_id):
                    raise AssertionError(f"{message!r} does not verify")
                verified += 1
        return verified

    row_b, verified = timed("(b) decode+verify: decode_frame + Message.verify", n, decode_and_verify)
    assert verified == n
    row_decode, _ = timed("    decode_frame alone", n, lambda: [wire.decode_frame(f) for f in frames])
    row_verify, _ = timed("    Message.verify alone", n, lambda: [m.verify(room.room_id) for m in messages])

    # (c) the ordered log ----------------------------------------------------------------
    shuffled = list(messages)
    random.Random(args.seed + 1).shuffle(shuffled)
    row_c, log = timed(
        "(c) OrderedLog.receive, random order, verifying", n, lambda: insert_all(room, shuffled)
    )
    check_log(log, n)
    with verification_stubbed():
        row_c_pre, log_pre = timed(
            "    random order, pre-verified (Message.verify stubbed)",
            n,
            lambda: insert_all(room, shuffled),
        )
        row_c_inorder, _ = timed(
            "    send order, pre-verified (nothing is ever held)",
            n,
            lambda: insert_all(room, messages),
        )
    check_log(log_pre, n)
    assert [m.key for m in log] == [m.key for m in log_pre]
    concurrent = sum(log.is_concurrent(m.id) for m in log)

    rows = [row_a, row_sign, row_b, row_decode, row_verify, row_c, row_c_pre, row_c_inorder]
    header = f"{'measurement':<58} {'messages':>9} {'seconds':>9} {'per second':>12} {'µs each':>9}"
    print()
    print(header)
    print("-" * len(header))
    for row in rows:
        print(row.render())
    print()
    subtracted = max(row_c.seconds - row_verify.seconds, 1e-9)
    print(
        "Verification in (c): OrderedLog.receive calls Message.verify once per new message.\n"
        "The 'pre-verified' rows replace Message.verify by `lambda self, room_id: True` for the run\n"
        "(the same messages were verified in (b)), so they show the log's own cost.\n"
        "Cross-check: verifying run minus 'Message.verify alone' = "
        f"{subtracted:.2f} s ({n / subtracted:,.0f} inserts/s)."
    )
    print(
        f"Final log: {len(log):,} entries ({len(room.placed)} founding the room), "
        f"{concurrent:,} ({concurrent / n:.1%}) marked "
        f"concurrent, stable prefix {log.stable_count:,}."
    )

    print()
    print("Bytes on the wire, one message with a 50-byte text (name 'alice', seq 4321):")
    for label, size in wire_sizes(identities[0], ids[1:], room.room_id):
        print(f"  {label:<56} {size:>6} B")
    total = sum(len(f) for f in frames)
    print(f"  {'average in this run (texts of 2-30 words), batch of ' + str(BATCH):<56} {total / n:>6.0f} B")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
