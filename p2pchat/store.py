"""SQLite storage for one peer: its identity and, per room, its entries, clock and proofs.

The store keeps exactly the bytes that were signed (payload and signature) so a
restarted peer can serve its history to others unchanged. It runs in WAL mode:
readers (``p2pchat log``) never block the running peer, and a commit is one
append to the write-ahead log.

Sync policy: ``synchronous=FULL`` for transactions that hold a message of our
own (a message must never be shown or gossiped before it is on disk, or a crash
could make us reuse its seq), ``NORMAL`` for batches of received messages (a
crash can lose the last batch; those messages are fetched again from peers).

Proofs against members (two versions of one entry, a broken clock promise; see
:mod:`p2pchat.evidence`) are kept per room in their own table, as the bytes their
offender signed, so that a restarted peer still refuses the offender. The table came
after format 3 and is created where it is missing: a directory written before it opens
unchanged, and gains it. So does the table of other versions of forked entries, which
an equivocator's entries on its other branch are judged from after a restart, and the
table of the members' latest clock announcements, which the stable flags of a
restarted peer (and of ``p2pchat log``) rest on as they did before, and the table of
the neighbours' addresses, which a peer started again without ``--join`` dials. That
table's ``learned`` column (the members' addresses the node learned, besides the
neighbours that were up) came later still, and is added where it is missing.
Format 4 (entries and announcements that name the versions they cover) reads a format-3
directory as it is, and marks it 4.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .evidence import ProofKind, SignedProof
from .identity import SENDER_ID_SIZE
from .invites import Invite
from .message import LINK_SIZE, EntryKind, Message, MessageId
from .wire import Head

__all__ = ["RoomRecord", "Store", "StoreFormatError", "StoredIdentity"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS identity (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seed BLOB NOT NULL,
    name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rooms (
    room BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    last_used INTEGER NOT NULL,
    clock INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entries (
    room BLOB NOT NULL,
    sender BLOB NOT NULL,
    seq INTEGER NOT NULL,
    lamport INTEGER NOT NULL,
    payload BLOB NOT NULL,
    signature BLOB NOT NULL,
    placeless INTEGER NOT NULL DEFAULT 0,
    placed_late INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (room, sender, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_order ON entries (room, lamport, sender);
CREATE TABLE IF NOT EXISTS invites (
    hash BLOB PRIMARY KEY,
    room BLOB NOT NULL,
    expires_ms INTEGER NOT NULL,
    used_by BLOB
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS evidence (
    room BLOB NOT NULL,
    offender BLOB NOT NULL,
    kind TEXT NOT NULL,
    first BLOB NOT NULL,
    first_signature BLOB NOT NULL,
    second BLOB NOT NULL,
    second_signature BLOB NOT NULL,
    PRIMARY KEY (room, offender, kind)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS versions (
    room BLOB NOT NULL,
    sender BLOB NOT NULL,
    seq INTEGER NOT NULL,
    payload BLOB NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (room, sender, seq, signature)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS announcements (
    room BLOB NOT NULL,
    sender BLOB NOT NULL,
    clock_seq INTEGER NOT NULL,
    clock_lamport INTEGER NOT NULL,
    delivered BLOB NOT NULL,
    at_ms INTEGER NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (room, sender)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS addresses (
    room BLOB NOT NULL,
    url TEXT NOT NULL,
    last_up INTEGER NOT NULL,
    learned INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (room, url)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('format', 4);
"""

DATABASE_NAME = "p2pchat.sqlite3"
MAX_ADDRESSES = 16
"""Neighbours' addresses kept per room as up (the latest up)."""
MAX_LEARNED_ADDRESSES = 64
"""Members' addresses the node learned kept per room (the latest learned), besides."""
FORMAT = 4
"""4: entries and announcements name the versions they cover (payload version 4). 3:
entries are hash-chained (payload version 3), read as they are (and the directory marked
4: a release that reads only 3 would misread the entries written since). 2: the same
tables, entries without."""
_CHAINED_FORMAT = 3


class StoreFormatError(Exception):
    """The data directory was written in a format this release cannot read."""


@dataclass(frozen=True, slots=True)
class RoomRecord:
    room_id: bytes
    name: str
    last_used: int
    """Wall clock (ms) when a peer last opened the room."""
    entries: int


class StoredIdentity:
    def __init__(self, seed: bytes, name: str) -> None:
        self.seed = seed
        self.name = name


class Store:
    """A peer's SQLite database in ``data_dir``: one identity, any number of rooms."""

    def __init__(self, data_dir: str | Path, *, read_only: bool = False) -> None:
        self.path = Path(data_dir) / DATABASE_NAME
        if read_only:
            if not self.path.exists():
                raise FileNotFoundError(f"no p2pchat data in {data_dir}")
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                self._check_format(data_dir)
            except sqlite3.OperationalError:
                # A database in WAL mode opens read-only only where SQLite may make its
                # -shm file. Where it may not (a read-only copy, a backup), read it as it
                # is. (A writer with more rights, meanwhile, could make a read fail; it
                # cannot be harmed.)
                self._db.close()
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro&immutable=1", uri=True)
                self._check_format(data_dir)
        else:
            _make_private(self.path)
            self._db = sqlite3.connect(self.path)
            self._check_format(data_dir)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
            if "placeless" not in self._columns("entries"):
                # (Written by the release before: it held no entry without a place.)
                self._db.execute("ALTER TABLE entries ADD COLUMN placeless INTEGER NOT NULL DEFAULT 0")
                self._db.commit()
            if "placed_late" not in self._columns("entries"):
                # (Written by a release before: it did not keep that mark.)
                self._db.execute("ALTER TABLE entries ADD COLUMN placed_late INTEGER NOT NULL DEFAULT 0")
                self._db.commit()
            if "learned" not in self._columns("addresses"):
                # (Written by a release before: it kept only the neighbours that were up.)
                self._db.execute("ALTER TABLE addresses ADD COLUMN learned INTEGER NOT NULL DEFAULT 0")
                self._db.commit()
            # Format 3 is read as it is: its entries and announcements name no versions.
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'format' AND value < ?", (FORMAT, FORMAT))
            self._db.commit()
        self._db.execute("PRAGMA synchronous=NORMAL")

    def _check_format(self, data_dir: str | Path) -> None:
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "messages" in tables:
            self._db.close()
            raise StoreFormatError(
                f"{data_dir} was written by p2pchat 0.1, whose messages belong to no room and "
                "cannot be moved into one (they are signed by their authors). Move the directory "
                "aside, or delete it, and start again: your peers will send you the history of "
                "the room you join."
            )
        if "meta" in tables:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
            if row is not None and int(row[0]) > FORMAT:
                self._db.close()
                raise StoreFormatError(f"{data_dir} was written by a newer p2pchat (format {row[0]})")
            if row is not None and int(row[0]) < _CHAINED_FORMAT:
                self._db.close()
                raise StoreFormatError(
                    f"{data_dir} was written by an earlier p2pchat (format {row[0]}), whose entries "
                    "are not hash-chained and cannot be chained now (they are signed by their "
                    "authors). Move the directory aside, or delete it, and start again: your "
                    "peers will send you the history of the room you join."
                )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Identity -------------------------------------------------------------------
    def load_identity(self) -> StoredIdentity | None:
        row = self._db.execute("SELECT seed, name FROM identity WHERE id = 1").fetchone()
        return StoredIdentity(bytes(row[0]), str(row[1])) if row else None

    def save_identity(self, seed: bytes, name: str) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO identity (id, seed, name) VALUES (1, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET name = excluded.name",
                (seed, name),
            )

    # Rooms ------------------------------------------------------------------------
    def rooms(self) -> list[RoomRecord]:
        """Every room stored here, the most recently used first."""
        rows = self._db.execute(
            "SELECT r.room, r.name, r.last_used, (SELECT count(*) FROM entries e WHERE e.room = r.room) "
            "FROM rooms r ORDER BY r.last_used DESC"
        ).fetchall()
        return [
            RoomRecord(bytes(room), str(name) or self._founded_as(bytes(room)), int(used), int(n))
            for room, name, used, n in rows
        ]

    def _founded_as(self, room_id: bytes) -> str:
        """The name ``room_id``'s genesis gives it, if that entry is stored ('' if not:
        a room joined before its history came)."""
        row = self._db.execute(
            "SELECT payload, signature FROM entries WHERE room = ? AND seq = 1 AND lamport = 1", (room_id,)
        ).fetchone()  # (only a genesis has stamp 1: every other entry depends on it)
        if row is None:
            return ""
        try:
            genesis = Message.from_wire(_blob(row[0]), _blob(row[1]))
        except ValueError:
            return ""  # (a damaged row: the name is only for show)
        return genesis.text if genesis.kind is EntryKind.GENESIS else ""

    def last_room(self) -> bytes | None:
        rooms = self.rooms()
        return rooms[0].room_id if rooms else None

    def find_room(self, prefix: str) -> bytes | None:
        """The room whose hex id starts with ``prefix`` (None if none or several)."""
        found = [r.room_id for r in self.rooms() if r.room_id.hex().startswith(prefix.lower())]
        return found[0] if len(found) == 1 else None

    def use_room(self, room_id: bytes, name: str, when_ms: int) -> None:
        """Record that a peer opened ``room_id`` now (it becomes the last used)."""
        with self._db:
            self._db.execute(
                "INSERT INTO rooms (room, name, last_used) VALUES (?, ?, ?) "
                "ON CONFLICT (room) DO UPDATE SET last_used = excluded.last_used, "
                "name = CASE WHEN excluded.name = '' THEN name ELSE excluded.name END",
                (room_id, name, when_ms),
            )

    # Messages -------------------------------------------------------------------
    def save_messages(
        self,
        room_id: bytes,
        messages: Iterable[Message],
        *,
        durable: bool = False,
        proofs: Iterable[SignedProof] = (),
        placeless: Collection[MessageId] = (),
        placed_late: Collection[MessageId] = (),
        versions: Iterable[Message] = (),
        announcements: Iterable[Head] = (),
    ) -> int:
        """Store entries of ``room_id`` (already stored ones are ignored) in one transaction,
        with ``proofs`` found among them (see :meth:`save_proofs`). The entries whose ids
        are in ``placeless`` are marked as held without a place in our log
        (``log.Entombed.placeless``): a restart holds them so again; those in
        ``placed_late`` as placed below positions already stable in our log
        (``log.Delivered.placed_late``): a restart marks them so again. ``versions`` are
        other versions of forked entries (``OrderedLog.other_versions``), kept with the
        entries that may go on from them. ``announcements`` are members' signed clock
        announcements (``OrderedLog.take_new_announcements``): each replaces the one
        kept for its member.

        ``durable`` waits for the disk (fsync) before returning: use it for our own.
        Returns how many entry rows were new.
        """
        rows = [
            (
                room_id, m.sender_id, m.seq, m.lamport, m.payload, m.signature,
                int(m.id in placeless), int(m.id in placed_late),
            )
            for m in messages
        ]  # fmt: skip
        proofs, versions = list(proofs), list(versions)
        announced = [_announcement_row(room_id, head) for head in announcements if head.signature]
        if not rows and not proofs and not versions and not announced:
            return 0
        if durable:
            self._db.execute("PRAGMA synchronous=FULL")
        try:
            with self._db:
                self._insert_proofs(room_id, proofs)
                self._db.executemany(
                    "INSERT OR IGNORE INTO versions (room, sender, seq, payload, signature) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(room_id, v.sender_id, v.seq, v.payload, v.signature) for v in versions],
                )
                self._db.executemany(
                    "INSERT OR REPLACE INTO announcements "
                    "(room, sender, clock_seq, clock_lamport, delivered, at_ms, signature) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    announced,
                )
                if not rows:
                    return 0
                before = self._db.total_changes
                self._db.executemany(
                    "INSERT OR IGNORE INTO entries "
                    "(room, sender, seq, lamport, payload, signature, placeless, placed_late) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                added = self._db.total_changes - before
                clock = max(row[3] for row in rows)
                self._db.execute(
                    "INSERT INTO rooms (room, name, last_used, clock) VALUES (?, '', 0, ?) "
                    "ON CONFLICT (room) DO UPDATE SET clock = max(clock, excluded.clock)",
                    (room_id, clock),
                )
                return added
        finally:
            if durable:
                self._db.execute("PRAGMA synchronous=NORMAL")

    # Proofs -------------------------------------------------------------------------
    def save_proofs(self, room_id: bytes, proofs: Iterable[SignedProof]) -> None:
        """Keep proofs against members of ``room_id``, in one transaction.

        Idempotent and bounded: one proof per offender and kind (the first stored; one
        is enough to expel it), so a room holds at most two per member it ever had.
        """
        proofs = list(proofs)
        if proofs:
            with self._db:
                self._insert_proofs(room_id, proofs)

    def _insert_proofs(self, room_id: bytes, proofs: list[SignedProof]) -> None:
        self._db.executemany(
            "INSERT OR IGNORE INTO evidence "
            "(room, offender, kind, first, first_signature, second, second_signature) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (room_id, p.offender, p.kind.value, p.first, p.first_signature, p.second, p.second_signature)
                for p in proofs
            ],
        )

    def load_proofs(self, room_id: bytes) -> list[SignedProof]:
        """The proofs kept for ``room_id``, as stored: not checked (see
        :func:`p2pchat.evidence.proof_from`; a value that is no blob comes back empty, and
        fails that check). A row of a kind this release does not know is skipped."""
        if not self._has_table("evidence"):
            return []  # (a directory from before the table, opened read-only)
        rows = self._db.execute(
            "SELECT offender, kind, first, first_signature, second, second_signature "
            "FROM evidence WHERE room = ? ORDER BY offender, kind",
            (room_id,),
        ).fetchall()
        kinds = {kind.value: kind for kind in ProofKind}
        return [
            SignedProof(_blob(offender), kinds[kind], _blob(a), _blob(a_sig), _blob(b), _blob(b_sig))
            for offender, kind, a, a_sig, b, b_sig in rows
            if kind in kinds
        ]

    def _has_table(self, name: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return row is not None

    def save_invite(self, room_id: bytes, invite: Invite) -> None:
        """Keep an invite we issued (only the hash of its secret), durably."""
        with self._durable():
            self._db.execute(
                "INSERT OR REPLACE INTO invites (hash, room, expires_ms, used_by) VALUES (?, ?, ?, ?)",
                (invite.secret_hash, room_id, invite.expires_ms, invite.used_by),
            )

    def use_invite(self, secret_hash: bytes, by: bytes) -> None:
        """Mark an invite used, durably (it must never admit twice, even after a crash)."""
        with self._durable():
            self._db.execute("UPDATE invites SET used_by = ? WHERE hash = ?", (by, secret_hash))

    def load_invites(self, room_id: bytes) -> list[Invite]:
        rows = self._db.execute(
            "SELECT hash, expires_ms, used_by FROM invites WHERE room = ?", (room_id,)
        ).fetchall()
        return [Invite(bytes(h), int(e), bytes(u) if u is not None else None) for h, e, u in rows]

    @contextmanager
    def _durable(self) -> Iterator[None]:
        self._db.execute("PRAGMA synchronous=FULL")
        try:
            with self._db:
                yield
        finally:
            self._db.execute("PRAGMA synchronous=NORMAL")

    def load_messages(self, room_id: bytes) -> Iterator[Message]:
        """Every stored entry of ``room_id``, in log order (which is also a causal order)."""
        cursor = self._db.execute(
            "SELECT payload, signature FROM entries WHERE room = ? ORDER BY lamport, sender", (room_id,)
        )
        for payload, signature in cursor:
            yield Message.from_wire(bytes(payload), bytes(signature))

    def load_versions(self, room_id: bytes) -> list[Message]:
        """The other versions of forked entries of ``room_id`` stored with the entries
        (see :meth:`save_messages`); none in a directory from before them, opened read-only."""
        if not self._has_table("versions"):
            return []
        rows = self._db.execute(
            "SELECT payload, signature FROM versions WHERE room = ? ORDER BY sender, seq", (room_id,)
        )
        return [Message.from_wire(bytes(payload), bytes(signature)) for payload, signature in rows]

    def load_announcements(self, room_id: bytes) -> list[Head]:
        """The members' clock announcements kept for ``room_id`` (see :meth:`save_messages`),
        as stored: not checked (``OrderedLog.observe_head`` verifies each signature; a
        damaged value comes back as one that fails it). None in a directory from before
        the table, opened read-only."""
        if not self._has_table("announcements"):
            return []
        rows = self._db.execute(
            "SELECT sender, clock_seq, clock_lamport, delivered, at_ms, signature "
            "FROM announcements WHERE room = ? ORDER BY sender",
            (room_id,),
        )
        heads = []
        for sender, clock_seq, clock_lamport, delivered, at_ms, signature in rows:
            seq, lamport, beat = (_whole(n) for n in (clock_seq, clock_lamport, at_ms))
            grown, seen = _unpack_delivered(_blob(delivered))
            heads.append(
                Head(_blob(sender), seq, seq, lamport, _blob(signature), grown, beat, b"", b"", seen)
            )
        return heads

    def remember_address(self, room_id: bytes, url: str, now_ms: int) -> None:
        """Keep ``url``, the address of a neighbour of ``room_id`` (naming its peer id),
        as last up at ``now_ms``; only the MAX_ADDRESSES latest up per room are kept as
        up (an older one stays only if it is among the members' addresses learned, see
        :meth:`remember_learned`)."""
        with self._db:
            self._db.execute(
                "INSERT INTO addresses (room, url, last_up) VALUES (?, ?, ?) "
                "ON CONFLICT (room, url) DO UPDATE SET last_up = excluded.last_up",
                (room_id, url, now_ms),
            )
            self._db.execute(
                "UPDATE addresses SET last_up = 0 WHERE room = ? AND last_up > 0 AND url NOT IN "
                "(SELECT url FROM addresses WHERE room = ? AND last_up > 0 "
                "ORDER BY last_up DESC, url LIMIT ?)",
                (room_id, room_id, MAX_ADDRESSES),
            )
            self._drop_unkept(room_id)

    def remember_learned(self, room_id: bytes, urls: Iterable[str], now_ms: int) -> None:
        """Keep ``urls``, addresses of members of ``room_id`` the node learned (naming
        their peer ids; see Node.member_addresses), as learned at ``now_ms`` unless kept
        as learned already (then as learned when first kept); only the
        MAX_LEARNED_ADDRESSES latest learned per room are kept as learned."""
        with self._db:
            self._db.executemany(
                "INSERT INTO addresses (room, url, last_up, learned) VALUES (?, ?, 0, ?) "
                "ON CONFLICT (room, url) DO UPDATE SET learned = excluded.learned WHERE learned = 0",
                [(room_id, url, now_ms) for url in urls],
            )
            self._db.execute(
                "UPDATE addresses SET learned = 0 WHERE room = ? AND learned > 0 AND url NOT IN "
                "(SELECT url FROM addresses WHERE room = ? AND learned > 0 "
                "ORDER BY learned DESC, url LIMIT ?)",
                (room_id, room_id, MAX_LEARNED_ADDRESSES),
            )
            self._drop_unkept(room_id)

    def _drop_unkept(self, room_id: bytes) -> None:
        """Drop the addresses of ``room_id`` kept neither as up nor as learned."""
        self._db.execute("DELETE FROM addresses WHERE room = ? AND last_up = 0 AND learned = 0", (room_id,))

    def listen_port(self) -> int:
        """The port this peer listened on last (0: none kept), for a restart to take again."""
        if not self._has_table("meta"):
            return 0
        row = self._db.execute("SELECT value FROM meta WHERE key = 'listen_port'").fetchone()
        return int(row[0]) if row is not None and 0 < int(row[0]) < 65536 else 0

    def remember_listen_port(self, port: int) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('listen_port', ?)", (port,))

    def addresses(self, room_id: bytes) -> list[str]:
        """The addresses kept for ``room_id``: the neighbours' that were up, the latest up
        first, then the other members' that the node learned, the latest learned first
        (see :meth:`remember_learned`). None in a directory from before the table, opened
        read-only; only the neighbours' in one from before the members' learned."""
        if not self._has_table("addresses"):
            return []
        order = "last_up DESC, learned DESC" if "learned" in self._columns("addresses") else "last_up DESC"
        rows = self._db.execute(f"SELECT url FROM addresses WHERE room = ? ORDER BY {order}, url", (room_id,))
        return [str(url) for (url,) in rows]

    def load_placeless(self, room_id: bytes) -> set[MessageId]:
        """The stored entries of ``room_id`` held without a place in our log (see
        :meth:`save_messages`); none in a directory from before the mark, opened read-only."""
        if "placeless" not in self._columns("entries"):
            return set()
        rows = self._db.execute(
            "SELECT sender, seq FROM entries WHERE room = ? AND placeless = 1", (room_id,)
        )
        return {MessageId(bytes(sender), seq) for sender, seq in rows}

    def load_placed_late(self, room_id: bytes) -> set[MessageId]:
        """The stored entries of ``room_id`` placed below positions already stable in our
        log (see :meth:`save_messages`); none in a directory from before the mark, opened
        read-only."""
        if "placed_late" not in self._columns("entries"):
            return set()
        rows = self._db.execute(
            "SELECT sender, seq FROM entries WHERE room = ? AND placed_late = 1", (room_id,)
        )
        return {MessageId(bytes(sender), seq) for sender, seq in rows}

    def _columns(self, table: str) -> set[str]:
        return {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}

    def message_count(self, room_id: bytes) -> int:
        row = self._db.execute("SELECT count(*) FROM entries WHERE room = ?", (room_id,)).fetchone()
        return int(row[0])

    def clock(self, room_id: bytes) -> int:
        """The largest Lamport stamp ever stored in ``room_id``: our clock there never goes below it."""
        row = self._db.execute("SELECT clock FROM rooms WHERE room = ?", (room_id,)).fetchone()
        return int(row[0]) if row else 0


_DELIVERED_RECORD = SENDER_ID_SIZE + 8
"""A stored announcement's delivered seqs: each a sender id and its seq (8 bytes, big-endian)."""
_NAMING_VERSIONS = b"\x04"
"""How the delivered seqs of an announcement that names versions start: then its seen
digest (none if it names no entries), then the records (see p2pchat.message). A legacy
announcement's are the records alone (a multiple of their size: never this)."""


def _announcement_row(room_id: bytes, head: Head) -> tuple[object, ...]:
    delivered = b"".join(sender + seq.to_bytes(8, "big") for sender, seq in head.delivered)
    if head.seen is not None:
        delivered = _NAMING_VERSIONS + head.seen + delivered
    clock = (head.clock_seq, head.clock_lamport)
    return (room_id, head.sender_id, *clock, delivered, head.at_ms, head.signature)


def _unpack_delivered(data: bytes) -> tuple[tuple[tuple[bytes, int], ...], bytes | None]:
    """The delivered seqs packed by _announcement_row, and the seen digest (None: a
    legacy announcement's). Nothing if ``data`` is no whole records (a damaged row: the
    announcement then fails its signature check)."""
    seen: bytes | None = None
    if data.startswith(_NAMING_VERSIONS) and len(data) % _DELIVERED_RECORD:
        size = LINK_SIZE if len(data) > 1 else 0
        seen, data = data[1 : 1 + size], data[1 + size :]
    if len(data) % _DELIVERED_RECORD:
        return (), b""
    records = (data[i : i + _DELIVERED_RECORD] for i in range(0, len(data), _DELIVERED_RECORD))
    delivered = tuple((rec[:SENDER_ID_SIZE], int.from_bytes(rec[SENDER_ID_SIZE:], "big")) for rec in records)
    return delivered, seen


def _whole(value: object) -> int:
    """An INTEGER column's value (0 for anything else a hand-edited row may hold)."""
    return value if type(value) is int and value >= 0 else 0


def _blob(value: object) -> bytes:
    """A BLOB column's value (SQLite keeps whatever type was written: a hand-edited row
    may hold text or a number instead)."""
    return bytes(value) if isinstance(value, bytes | memoryview) else b""


def _make_private(database: Path) -> None:
    """Create the data directory (0700) and the database file (0600) for the owner only,
    before SQLite opens it: SQLite gives its -wal and -shm files the database's mode.
    A directory or files made by an older version are tightened the same way."""
    directory = database.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    os.close(os.open(database, os.O_CREAT | os.O_WRONLY, 0o600))
    for path in (database, *(database.with_name(database.name + s) for s in ("-wal", "-shm"))):
        if path.exists():
            os.chmod(path, 0o600)
