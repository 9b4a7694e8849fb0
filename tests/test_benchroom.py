"""The benchmarks' room and histories are ones a log takes whole (rule 10).

The benchmarks build their own rooms and histories outside any peer: when the entry
format or the membership rules change, these tests say so, instead of a benchmark
failing the next time someone runs it.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import benchroom
import catchup_bench
import core_bench
import memory_bench

from p2pchat.identity import Identity

WRITERS = [Identity(bytes([i + 1]) * 32) for i in range(3)]


def test_the_bench_room_has_exactly_its_writers_as_members() -> None:
    room = benchroom.found_room([w.sender_id for w in WRITERS])
    log = room.replica()
    assert log.members == frozenset(w.sender_id for w in WRITERS)
    assert len(log) == len(room.placed) and not log.blocked_senders()


def test_the_catch_up_history_is_taken_whole() -> None:
    members = [*(i.sender_id for i in catchup_bench.IDENTITIES), catchup_bench.READER.sender_id]
    room = benchroom.found_room(members)
    log = room.replica()
    for message in catchup_bench.build_history(300, room):
        log.receive(message)
    assert not log.blocked_senders() and not log.held_count
    assert len(log) == len(room.placed) + 300


def test_the_memory_history_is_taken_whole() -> None:
    memory_bench.measure(500)  # (it checks the log it filled; raises if anything is refused)


def test_the_core_bench_runs_on_a_small_history() -> None:
    assert core_bench.main(["--messages", "300"]) == 0
    sizes = dict(core_bench.wire_sizes(WRITERS[0], [w.sender_id for w in WRITERS[1:]], bytes(32)))
    assert all(size > 0 for size in sizes.values())
