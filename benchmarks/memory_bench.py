"""Memory per held message: an OrderedLog holding 100k and 1M messages.

Messages are built like real ones (CBOR payload, 64-byte signature, 50-byte text,
vector-clock deltas) and inserted as trusted (signature checks are not what is
measured here) into a log that holds the founding entries of a room whose members
are the senders (``benchroom.py``). Memory is the growth of the process's resident set, and, as a
cross-check, what tracemalloc sees allocated by Python.

    python benchmarks/memory_bench.py                 # 100k and 1M
    python benchmarks/memory_bench.py --counts 100000
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import time
import tracemalloc

from benchroom import BenchRoom, found_room

from p2pchat import codec
from p2pchat.message import PAYLOAD_VERSION, EntryKind, Message, versions_digest

SENDERS = 10


def rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


IDS = [bytes([i + 1]) * 32 for i in range(SENDERS)]


def build(count: int, room: BenchRoom) -> list[Message]:
    """A causal history: round-robin senders, each naming the previous writer (and, in
    its first message, the room's founding entries)."""
    messages = []
    seqs = [0] * SENDERS
    last: list[Message | None] = [None] * SENDERS
    last_link = [b""] * SENDERS
    for n in range(count):
        i = n % SENDERS
        seqs[i] += 1
        previous = (i - 1) % SENDERS
        deps = {IDS[previous]: seqs[previous]} if n else {}
        named = {IDS[previous]: last_link[previous]} if n else {}
        if seqs[i] == 1:
            deps.update(room.first_deps())
            named.update(room.first_links())
        seen = versions_digest((s, deps[s], named[s]) for s in sorted(deps)) if deps else b""
        name, text = f"peer{i}", f"message number {n:>10} " + "x" * 24
        lamport = room.base + n + 1
        before = last[i]
        link = before.entry_hash() if before is not None else b""  # (its hash chain)
        fields = [
            PAYLOAD_VERSION,
            IDS[i],
            seqs[i],
            lamport,
            1_790_000_000_000 + n,
            name,
            int(EntryKind.TEXT),
            text,
            dict(sorted(deps.items())),
            link,
            seen,
        ]
        payload = codec.dumps(fields)
        # Decoded as a peer decodes what it receives (sender ids and names are shared).
        signature = n.to_bytes(8, "big") * 8  # a distinct 64-byte object, as real ones are
        message = Message.from_wire(payload, signature)
        messages.append(message)
        last[i] = message
        last_link[i] = message.entry_hash()
    return messages


def measure(count: int) -> None:
    room = found_room(IDS)
    messages = build(count, room)
    log = room.replica()
    gc.collect()
    before_rss = rss_bytes()
    tracemalloc.start()
    started = time.perf_counter()
    for message in messages:
        log.receive(message, trusted=True, defer_stability=True)
    elapsed = time.perf_counter() - started
    gc.collect()
    traced, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # The messages themselves were built before: count them too, as a peer holds them.
    del messages
    gc.collect()
    log_rss = rss_bytes() - before_rss
    assert len(log) == len(room.placed) + count and not log.held_count and not log.blocked_senders()
    # Rebuild-free estimate of what the Message objects cost: measure a fresh batch.
    sample = 20_000
    gc.collect()
    tracemalloc.start()
    kept = build(sample, room)
    message_bytes = tracemalloc.get_traced_memory()[0] / sample
    tracemalloc.stop()
    del kept
    per_message = message_bytes + traced / count
    print(
        f"{count:>9,} messages: log structures {traced / count:6.0f} B/message (tracemalloc), "
        f"messages themselves {message_bytes:5.0f} B, total {per_message:6.0f} B per held message; "
        f"RSS growth while inserting {log_rss / count:6.0f} B/message; "
        f"insert {count / elapsed:,.0f}/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--counts", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    for count in args.counts:
        measure(count)


if __name__ == "__main__":
    main()
