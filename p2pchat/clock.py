"""Lamport and vector clocks as small immutable values.

Part of the pure core: no I/O, no wall clock, no randomness.

A :class:`LamportClock` is a single counter. In p2pchat it advances only when a
message is *delivered* to the local log (DESIGN.md rule 4), so a sender's stamp
is always ``1 + max(lamport of everything it had delivered)``.

A :class:`VectorClock` maps each sender to the highest sequence number of that
sender delivered so far. Comparing two vector clocks tells whether one event
happened before the other or whether they are concurrent.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

__all__ = ["Causality", "LamportClock", "VectorClock"]


@dataclass(frozen=True, slots=True, order=True)
class LamportClock:
    """A Lamport clock value. Immutable: every operation returns a new clock."""

    time: int = 0

    def tick(self) -> LamportClock:
        """The clock after a local event."""
        return LamportClock(self.time + 1)

    def merge(self, other: int | LamportClock) -> LamportClock:
        """The clock after observing a stamp: the larger of the two (no tick).

        p2pchat separates *observing* (merge on delivery) from *stamping* (tick
        on send), because the stamp of an outgoing message must be exactly one
        more than the largest delivered stamp.
        """
        value = other.time if isinstance(other, LamportClock) else other
        return self if self.time >= value else LamportClock(value)

    def stamp(self) -> int:
        """The stamp for a message sent now: one more than everything seen."""
        return self.time + 1


class Causality(enum.Enum):
    """How two vector clocks relate."""

    EQUAL = "equal"
    BEFORE = "before"
    AFTER = "after"
    CONCURRENT = "concurrent"


class VectorClock(Mapping[bytes, int]):
    """An immutable map ``sender_id -> highest seq delivered``; absent means 0."""

    __slots__ = ("_entries", "_hash")

    def __init__(self, entries: Mapping[bytes, int] | None = None) -> None:
        cleaned: dict[bytes, int] = {}
        for sender, seq in (entries or {}).items():
            if seq < 0:
                raise ValueError("vector clock entries are never negative")
            if seq:
                cleaned[sender] = seq
        self._entries = cleaned
        self._hash: int | None = None

    # Mapping protocol -------------------------------------------------------
    def __getitem__(self, sender: bytes) -> int:
        return self._entries[sender]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def get_seq(self, sender: bytes) -> int:
        """The entry for ``sender``, 0 when absent."""
        return self._entries.get(sender, 0)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, VectorClock):
            return self._entries == other._entries
        return NotImplemented

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._entries.items()))
        return self._hash

    def __repr__(self) -> str:
        inner = ", ".join(f"{s.hex()[:8]}:{n}" for s, n in sorted(self._entries.items()))
        return f"VectorClock({{{inner}}})"

    # Clock operations -------------------------------------------------------
    def tick(self, sender: bytes) -> VectorClock:
        """The clock after ``sender`` delivers its own next message."""
        entries = dict(self._entries)
        entries[sender] = entries.get(sender, 0) + 1
        return VectorClock(entries)

    def merge(self, other: Mapping[bytes, int]) -> VectorClock:
        """The entry-wise maximum of both clocks."""
        entries = dict(self._entries)
        for sender, seq in other.items():
            if seq > entries.get(sender, 0):
                entries[sender] = seq
        return VectorClock(entries)

    def includes(self, sender: bytes, seq: int) -> bool:
        """Whether message ``(sender, seq)`` is covered by this clock."""
        return self._entries.get(sender, 0) >= seq

    def compare(self, other: VectorClock) -> Causality:
        """Whether this clock is before, after, equal to or concurrent with ``other``."""
        less = greater = False
        for sender in self._entries.keys() | other._entries.keys():
            mine, theirs = self.get_seq(sender), other.get_seq(sender)
            if mine < theirs:
                less = True
            elif mine > theirs:
                greater = True
            if less and greater:
                return Causality.CONCURRENT
        if less:
            return Causality.BEFORE
        if greater:
            return Causality.AFTER
        return Causality.EQUAL
