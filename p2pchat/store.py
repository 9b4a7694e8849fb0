"""SQLite storage for one peer: its identity, its messages and its clock.

The store keeps exactly the bytes that were signed (payload and signature) so a
restarted peer can serve its history to others unchanged. It runs in WAL mode:
readers (``p2pchat log``) never block the running peer, and a commit is one
append to the write-ahead log.

Sync policy: ``synchronous=FULL`` for transactions that hold a message of our
own (a message must never be shown or gossiped before it is on disk, or a crash
could make us reuse its seq), ``NORMAL`` for batches of received messages (a
crash can lose the last batch; those messages are fetched again from peers).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from .message import Message

__all__ = ["Store", "StoredIdentity"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS identity (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seed BLOB NOT NULL,
    name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    sender BLOB NOT NULL,
    seq INTEGER NOT NULL,
    lamport INTEGER NOT NULL,
    payload BLOB NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (sender, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_order ON messages (lamport, sender);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

DATABASE_NAME = "p2pchat.sqlite3"


class StoredIdentity:
    def __init__(self, seed: bytes, name: str) -> None:
        self.seed = seed
        self.name = name


class Store:
    """A peer's SQLite database in ``data_dir``."""

    def __init__(self, data_dir: str | Path, *, read_only: bool = False) -> None:
        self.path = Path(data_dir) / DATABASE_NAME
        if read_only:
            if not self.path.exists():
                raise FileNotFoundError(f"no p2pchat data in {data_dir}")
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
        self._db.execute("PRAGMA synchronous=NORMAL")

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

    # Messages -------------------------------------------------------------------
    def save_messages(self, messages: Iterable[Message], *, durable: bool = False) -> int:
        """Store messages (already stored ones are ignored) in one transaction.

        ``durable`` waits for the disk (fsync) before returning: use it for our own.
        Returns how many rows were new.
        """
        rows = [(m.sender_id, m.seq, m.lamport, m.payload, m.signature) for m in messages]
        if not rows:
            return 0
        if durable:
            self._db.execute("PRAGMA synchronous=FULL")
        try:
            with self._db:
                before = self._db.total_changes
                self._db.executemany(
                    "INSERT OR IGNORE INTO messages (sender, seq, lamport, payload, signature) "
                    "VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
                clock = max(row[2] for row in rows)
                self._db.execute(
                    "INSERT INTO meta (key, value) VALUES ('clock', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
                    (clock,),
                )
                return self._db.total_changes - before - 1
        finally:
            if durable:
                self._db.execute("PRAGMA synchronous=NORMAL")

    def load_messages(self) -> Iterator[Message]:
        """Every stored message, in log order (which is also a causal order)."""
        cursor = self._db.execute("SELECT payload, signature FROM messages ORDER BY lamport, sender")
        for payload, signature in cursor:
            yield Message.from_wire(bytes(payload), bytes(signature))

    def message_count(self) -> int:
        row = self._db.execute("SELECT count(*) FROM messages").fetchone()
        return int(row[0])

    def clock(self) -> int:
        """The largest Lamport stamp ever stored here: the clock never goes below it."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'clock'").fetchone()
        return int(row[0]) if row else 0
