"""The room the benchmarks write into: founded, its writers admitted, its founder gone.

Every entry of a log belongs to a room, and an entry is accepted only from a member
admitted before it (DESIGN.md rule 10). A benchmark history is therefore preceded by
the room's founding entries: a founder writes the genesis, admits every writer with
one membership change (a CHANGE, which the founder, alone in epoch 0, decides with its
COMMIT), then leaves, so that stability counts exactly the writers (as when the
benchmarks were written, before rooms). Each writer's first entry names the founder's LEAVE in its
vector clock and is stamped above it, as an admitted member's first entry is.

Imported by the benchmark scripts next to it (run as ``python benchmarks/X.py``,
which puts this directory on ``sys.path``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from p2pchat.identity import Identity
from p2pchat.log import OrderedLog
from p2pchat.message import Change, EntryKind, Flush, Message

FOUNDER = Identity(b"\xf0" * 32)


@dataclass(frozen=True, slots=True)
class BenchRoom:
    room_id: bytes
    entries: list[Message]
    """Genesis, the CHANGE admitting every writer, its COMMIT, the founder's LEAVE: in
    log order."""

    @property
    def placed(self) -> list[Message]:
        """The founding entries that take a place in the log (a COMMIT takes none)."""
        return [entry for entry in self.entries if entry.kind is not EntryKind.COMMIT]

    @property
    def base(self) -> int:
        """The founding entries' highest stamp: every writer's first entry is stamped above."""
        return self.entries[-1].lamport

    @property
    def founder_seq(self) -> int:
        return self.entries[-1].seq

    def first_deps(self) -> dict[bytes, int]:
        """What a writer's first entry adds to its vector clock: the founding entries."""
        return {FOUNDER.sender_id: self.founder_seq}

    def first_links(self) -> dict[bytes, bytes]:
        """The versions of what ``first_deps`` names (for an entry's ``seen``)."""
        return {FOUNDER.sender_id: self.entries[-1].entry_hash()}

    def replica(self) -> OrderedLog:
        """A fresh log holding only the founding entries."""
        log = OrderedLog(room_id=self.room_id)
        for entry in self.entries:
            log.receive(entry, trusted=True, defer_stability=True)
        log.advance_stability()
        return log


def found_room(writers: Sequence[bytes]) -> BenchRoom:
    """A room whose members are exactly ``writers`` (sender ids)."""
    log, genesis = OrderedLog.found(FOUNDER, name="founder", room_name="bench", sent_at_ms=0)
    admitted = tuple((writer, f"member-{index}") for index, writer in enumerate(writers))
    change = _write(log, EntryKind.CHANGE, change=Change(0, 0, admitted))
    commit = _write(log, EntryKind.COMMIT, flush=Flush(0, 0, change.id))
    leave = _write(log, EntryKind.LEAVE)
    assert log.room_id is not None and log.members == frozenset(writers)
    return BenchRoom(log.room_id, [genesis, change, commit, leave])


def _write(
    log: OrderedLog, kind: EntryKind, change: Change | None = None, flush: Flush | None = None
) -> Message:
    entry = log.compose(
        FOUNDER, name="founder", text="", sent_at_ms=0, kind=kind, change=change, flush=flush
    )
    log.receive(entry, trusted=True)
    return entry
