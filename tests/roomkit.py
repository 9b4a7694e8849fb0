"""A room for tests of the core: a founder admits the test identities, then leaves.

Stability then counts exactly the admitted identities (the founder's LEAVE is its
last entry), and every admitted identity's first entry is stamped above
``room.base``. ``room.make`` builds validly signed entries with any fields, honest
or not; honest ones come from ``OrderedLog.compose`` on a log from ``room.log()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from p2pchat.identity import Identity
from p2pchat.log import LogConfig, OrderedLog
from p2pchat.message import LINK_SIZE, Change, EntryKind, Flush, Message

FOUNDER = Identity(b"\xf0" * 32)


class Room:
    def __init__(
        self, members: Iterable[Identity], *, founder_leaves: bool = True, name: str = "test room"
    ) -> None:
        log, genesis = OrderedLog.found(FOUNDER, name="founder", room_name=name, sent_at_ms=0)
        self.entries: list[Message] = [genesis]
        admitted = tuple((member.sender_id, "member") for member in members)
        if admitted:
            # The founder alone is epoch 0: its CHANGE is complete at once, and decided by
            # its COMMIT.
            change = self._founder_writes(log, EntryKind.CHANGE, Change(0, 0, admitted))
            self.entries.append(change)
            self.entries.append(self._founder_writes(log, EntryKind.COMMIT, None, Flush(0, 0, change.id)))
        if founder_leaves:
            self.entries.append(self._founder_writes(log, EntryKind.LEAVE, None))
        assert log.room_id is not None
        self.room_id: bytes = log.room_id
        self.base = self.entries[-1].lamport
        """Every member's first entry is stamped above this."""
        self.founder_seq = self.entries[-1].seq
        self._made: dict[tuple[bytes, int], Message] = {}
        """The entry last made here per (author, seq): what the author's next one links to."""

    def links_of(self, deps: Mapping[bytes, int]) -> dict[bytes, bytes]:
        """The link of each entry ``deps`` names, where it is a founding entry or one made
        here (the version last made of it); others are left out (written as zeros)."""
        known = {(entry.sender_id, entry.seq): entry for entry in self.entries} | self._made
        return {s: known[s, n].entry_hash() for s, n in deps.items() if (s, n) in known}

    @staticmethod
    def _founder_writes(
        log: OrderedLog, kind: EntryKind, change: Change | None, flush: Flush | None = None
    ) -> Message:
        entry = log.compose(
            FOUNDER, name="founder", text="", sent_at_ms=0, kind=kind, change=change, flush=flush
        )
        log.receive(entry, trusted=True)
        return entry

    def __len__(self) -> int:
        """The founding entries that take a place in the log (a COMMIT takes none)."""
        return sum(entry.kind is not EntryKind.COMMIT for entry in self.entries)

    def log(self, config: LogConfig | None = None) -> OrderedLog:
        """A fresh replica holding the room's founding entries."""
        log = OrderedLog(config, room_id=self.room_id)
        for entry in self.entries:
            log.receive(entry, trusted=True, defer_stability=True)
        log.advance_stability()
        return log

    def make(
        self,
        identity: Identity,
        seq: int,
        lamport: int,
        deps: Mapping[bytes, int] | None = None,
        text: str = "hello",
        *,
        relative: bool = True,
        kind: EntryKind = EntryKind.TEXT,
        change: Change | None = None,
        flush: Flush | None = None,
        previous: bytes | None = None,
        links: Mapping[bytes, bytes] | None = None,
    ) -> Message:
        """A validly signed entry with exactly these fields, honest or not.

        With ``relative`` the stamp counts from ``base`` and a first entry depends on
        the founding entries (as an honest member's does); deps are taken as given.
        ``previous`` defaults to a link to the entry last made here for ``seq - 1`` (or
        to a link to nothing in particular, if there is none); ``links`` (the versions of
        the entries ``deps`` names, for its seen digest) to ``links_of`` them.
        """
        if previous is None:
            before = self._made.get((identity.sender_id, seq - 1))
            previous = b"" if seq == 1 else before.entry_hash() if before else bytes(LINK_SIZE)
        full_deps = dict(deps or {})
        if relative:
            lamport += self.base
            if seq == 1:
                full_deps.setdefault(FOUNDER.sender_id, self.founder_seq)
        entry = Message.create(
            identity,
            seq=seq,
            lamport=lamport,
            sent_at_ms=0,
            name="n",
            text=text,
            deps=full_deps,
            room_id=self.room_id,
            kind=kind,
            change=change,
            flush=flush,
            previous=previous,
            links=self.links_of(full_deps) if links is None else links,
        )
        self._made[identity.sender_id, seq] = entry
        return entry
