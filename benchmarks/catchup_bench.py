"""A late joiner pulling history: messages per second, verification and storage included.

Builds a store holding N signed messages from 10 senders (after the founding
entries of their room, see ``benchroom.py``), starts a real peer process on it
(``p2pchat chat --json``), then opens a fresh peer in this process that joins it
with an empty store and times how long it takes until every message is verified,
delivered in order and committed to its own SQLite store.

The source peer is not a member of the room (its founder left it): it admits
nobody, so exactly the room's entries travel and the joiner's log can be compared
with them entry for entry. A peer serves history only to members of the room, so
the joiner is a reader the founder admitted along with the writers.

    python benchmarks/catchup_bench.py                  # 100,000 messages
    python benchmarks/catchup_bench.py --messages 20000
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import trio
from benchroom import BenchRoom, found_room

from p2pchat.bench import _cpu_reading, _cpu_since, chat_command, json_events
from p2pchat.identity import Identity
from p2pchat.message import Message, MessageKey
from p2pchat.peer import Peer, open_peer
from p2pchat.store import Store

SENDERS = 10


IDENTITIES = [Identity(bytes([i + 1]) * 32) for i in range(SENDERS)]
READER = Identity(bytes([98]) * 32)
"""The joiner: a member that never wrote (peers send history to members only)."""


def build_history(count: int, room: BenchRoom) -> list[Message]:
    """Round-robin senders, each message written after seeing the one before it."""
    identities = IDENTITIES
    seqs = [0] * SENDERS
    links = [b""] * SENDERS  # each sender's link to its previous message
    messages = []
    for n in range(count):
        i = n % SENDERS
        seqs[i] += 1
        previous = (i - 1) % SENDERS
        deps = (
            {identities[previous].sender_id: seqs[previous]} if n and SENDERS > 1 and seqs[previous] else {}
        )
        named = {identities[previous].sender_id: links[previous]} if deps else {}
        if seqs[i] == 1:
            deps.update(room.first_deps())
            named.update(room.first_links())
        message = Message.create(
            identities[i],
            seq=seqs[i],
            lamport=room.base + n + 1,
            sent_at_ms=1_790_000_000_000 + n,
            name=f"peer{i}",
            text=f"history message {n:>8} " + "x" * 26,
            deps=deps,
            room_id=room.room_id,
            previous=links[i],
            links=named,
        )
        links[i] = message.entry_hash()
        messages.append(message)
    return messages


async def run(count: int) -> None:
    with tempfile.TemporaryDirectory(prefix="p2pchat-catchup-") as tmp:
        started = time.perf_counter()
        room = found_room([*(i.sender_id for i in IDENTITIES), READER.sender_id])
        history = build_history(count, room)
        entries = room.entries + history
        placed = room.placed + history  # (what takes a place in the log: all but the COMMIT)
        check = room.replica()  # a cheap guard against a history no peer would take
        for message in history[:1000]:
            check.receive(message)
        if check.blocked_senders() or len(check) != len(room.placed) + min(count, 1000):
            raise AssertionError(f"a log refuses the history: {check.blocked_senders()}")
        with Store(Path(tmp) / "source") as store:
            store.save_identity(bytes([99]) * 32, "source")
            store.save_messages(room.room_id, entries)
            store.use_room(room.room_id, "bench", 0)
        print(f"built and stored {count:,} signed messages in {time.perf_counter() - started:.1f} s")

        command = chat_command("source", f"{tmp}/source")
        process = await trio.lowlevel.open_process(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            url = await _wait_until_replayed(process, count)
            joining = open_peer("joiner", data_dir=f"{tmp}/joiner", join=[url], identity=READER)
            async with joining as joiner:
                began = time.perf_counter()
                cpu_began, source_began = time.process_time(), _cpu_reading(process.pid)
                with trio.fail_after(600):
                    await joiner.wait_delivered(len(placed))
                    # (The reader, a member, may propose to admit the source: that entry
                    # of its own may have counted above.)
                    while len(_history_of(joiner)) < len(placed):
                        await trio.sleep(0.01)
                delivered = time.perf_counter() - began
                joiner._save()  # commit the last batch now, and count it
                stored = time.perf_counter() - began
                joiner_cpu = time.process_time() - cpu_began
                source_cpu = _cpu_since(process.pid, source_began)
                assert _history_of(joiner) == [m.key for m in placed]
            with Store(f"{tmp}/joiner", read_only=True) as store:
                assert store.message_count(room.room_id) >= len(entries)
        finally:
            process.terminate()
            with trio.move_on_after(10):
                await process.wait()
        print(
            f"late joiner: {count:,} messages verified and delivered in {delivered:.2f} s, "
            f"stored in {stored:.2f} s -> {count / stored:,.0f} messages/s"
        )
        # On a shared machine the wall time includes waiting for a core; CPU time does not.
        print(
            f"cpu: joiner {joiner_cpu:.2f} s ({count / max(joiner_cpu, 1e-9):,.0f} messages per "
            f"cpu-second, its verifying thread included), source {source_cpu:.2f} s"
        )


def _history_of(joiner: Peer) -> list[MessageKey]:
    """The joiner's log without its own entries (it may propose to admit the source)."""
    return [m.key for m in joiner.messages() if m.sender_id != READER.sender_id]


async def _wait_until_replayed(process: trio.Process, count: int) -> str:
    """The source peer's URL, once it has loaded (and printed) its whole history."""
    assert process.stdout is not None
    url, seen = "", 0
    with trio.fail_after(600):
        async for _, event in json_events(process.stdout):
            if event["event"] == "ready":
                url = event["url"]
            elif event["event"] == "message":
                seen += 1
            if url and seen >= count:
                return url
    raise RuntimeError("the source peer stopped before replaying its history")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    trio.run(run, args.messages)


if __name__ == "__main__":
    main()
