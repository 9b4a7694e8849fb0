"""The SQLite store: identity, rooms, their entries and clocks survive reopening."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from roomkit import Room

from p2pchat import codec
from p2pchat.identity import Identity
from p2pchat.log import OrderedLog
from p2pchat.message import Message, signed_bytes
from p2pchat.peer import PeerConfig, load_node, restore_log
from p2pchat.store import (
    DATABASE_NAME,
    FORMAT,
    MAX_ADDRESSES,
    MAX_LEARNED_ADDRESSES,
    SCHEMA,
    Store,
    StoreFormatError,
)
from p2pchat.wire import Head

ME = Identity(b"\x05" * 32)


def history(count: int, room_name: str = "room") -> tuple[bytes, list[Message]]:
    """A room founded by ME: its id and its entries (the genesis, then ``count`` texts)."""
    log, genesis = OrderedLog.found(ME, name="me", room_name=room_name, sent_at_ms=0)
    messages = [genesis]
    for i in range(count):
        message = log.compose(ME, name="me", text=f"m{i}", sent_at_ms=i)
        log.receive(message)
        messages.append(message)
    assert log.room_id is not None
    return log.room_id, messages


def test_messages_round_trip_byte_for_byte(tmp_path: Path) -> None:
    room, messages = history(5)
    assert len(messages) == 6  # the genesis and five texts
    with Store(tmp_path) as store:
        assert store.save_messages(room, messages[:3], durable=True) == 3
        assert store.save_messages(room, messages) == 3  # the first three are already there
    with Store(tmp_path) as store:
        loaded = list(store.load_messages(room))
        assert [(m.payload, m.signature) for m in loaded] == [(m.payload, m.signature) for m in messages]
        assert store.clock(room) == messages[-1].lamport
        assert store.message_count(room) == 6


async def test_identity_and_history_come_back_with_the_node(tmp_path: Path) -> None:
    # (Async only because a node reads trio's clock to map it to the wall clock.)
    with Store(tmp_path) as store:
        node = load_node("alice", store, PeerConfig())
        assert node.is_member  # it founded a room of its own
        room = node.log.room_id
        first = node.compose("hello", 0)
        assert room is not None
        store.save_messages(room, [first], durable=True)
        node.publish(first, 0.0)
    with Store(tmp_path) as store:
        again = load_node("alice", store, PeerConfig())
    assert again.identity.sender_id == node.identity.sender_id
    assert again.log.room_id == room  # the room last used comes back
    assert [m.text for m in again.log if m.is_text] == ["hello"]
    assert again.compose("next", 0).seq == 3  # seq continues (1 was the genesis), never reused


def test_two_rooms_in_one_data_directory_stay_apart(tmp_path: Path) -> None:
    first, first_entries = history(3, "first")
    second, second_entries = history(2, "second")
    assert first != second
    with Store(tmp_path) as store:
        store.save_messages(first, first_entries, durable=True)
        store.use_room(first, "first", 1_000)
        store.save_messages(second, second_entries, durable=True)
        store.use_room(second, "second", 2_000)
    with Store(tmp_path, read_only=True) as store:
        rooms = {record.room_id: record for record in store.rooms()}
        assert set(rooms) == {first, second}
        assert (rooms[first].name, rooms[first].entries) == ("first", 4)
        assert (rooms[second].name, rooms[second].entries) == ("second", 3)
        assert store.last_room() == second
        assert [m.text for m in store.load_messages(first)] == ["first", "m0", "m1", "m2"]
        assert [m.text for m in store.load_messages(second)] == ["second", "m0", "m1"]
        assert store.clock(first) == first_entries[-1].lamport
        assert store.clock(second) == second_entries[-1].lamport
        # Each room's log is rebuilt from its own entries only.
        assert [m.payload for m in restore_log(store, first)] == [m.payload for m in first_entries]
        assert store.find_room(first.hex()[:8]) == first


async def test_a_room_is_reopened_by_id_and_becomes_the_last_used(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        first = load_node("alice", store, PeerConfig(), found=True).log.room_id
    with Store(tmp_path) as store:
        # A second room in the same directory (as a newcomer's adopted room would be).
        second, entries = history(1, "second")
        store.save_messages(second, entries, durable=True)
        store.use_room(second, "", 5)
        assert first is not None
        again = load_node("alice", store, PeerConfig(), room=first.hex()[:12])
        assert again.log.room_id == first
        assert store.last_room() == first


PREVIOUS_RELEASE_SCHEMA = """
CREATE TABLE identity (id INTEGER PRIMARY KEY CHECK (id = 1), seed BLOB NOT NULL, name TEXT NOT NULL);
CREATE TABLE messages (
    sender BLOB NOT NULL, seq INTEGER NOT NULL, lamport INTEGER NOT NULL,
    payload BLOB NOT NULL, signature BLOB NOT NULL, PRIMARY KEY (sender, seq)
) WITHOUT ROWID;
CREATE INDEX messages_order ON messages (lamport, sender);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@pytest.mark.parametrize("read_only", [False, True])
def test_a_directory_of_the_previous_release_is_refused_and_left_intact(
    tmp_path: Path, read_only: bool
) -> None:
    database = tmp_path / DATABASE_NAME
    with sqlite3.connect(database) as db:
        db.executescript(PREVIOUS_RELEASE_SCHEMA)
        db.execute("INSERT INTO identity VALUES (1, ?, 'old')", (b"\x07" * 32,))
        db.execute("INSERT INTO messages VALUES (?, 1, 1, ?, ?)", (b"\x01" * 32, b"payload", b"sig"))
    db.close()
    before = database.read_bytes()
    with pytest.raises(StoreFormatError, match=r"belong to no room.*Move the directory aside"):
        Store(tmp_path, read_only=read_only)
    # Never silently misread, and nothing lost: the old data is exactly as it was.
    assert database.read_bytes() == before
    with sqlite3.connect(database) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 1
    db.close()
    assert "entries" not in tables and "rooms" not in tables


@pytest.mark.parametrize("read_only", [False, True])
def test_a_directory_of_format_2_is_refused_and_left_intact(tmp_path: Path, read_only: bool) -> None:
    """Format 2 held the same tables, but entries without hash chains: they cannot be
    chained now (their authors signed them), so the directory is refused, unchanged."""
    room, messages = history(2)
    with Store(tmp_path) as store:
        store.save_identity(b"\x07" * 32, "old")
        store.save_messages(room, messages)
        store._db.execute("UPDATE meta SET value = 2 WHERE key = 'format'")
        store._db.commit()
    database = tmp_path / DATABASE_NAME
    before = database.read_bytes()
    with pytest.raises(StoreFormatError, match=r"format 2.*not hash-chained.*Move the directory aside"):
        Store(tmp_path, read_only=read_only)
    assert database.read_bytes() == before
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()[0] == 2
        assert db.execute("SELECT count(*) FROM entries").fetchone()[0] == len(messages)
    db.close()


def _legacy_entry(room: Room, author: Identity, lamport: int, text: str) -> Message:
    """An entry as the release before wrote it (payload version 3: its deps name seqs,
    not versions), first of its author, after the founding entries."""
    founder = room.entries[-1]
    payload = codec.dumps(
        [
            3,
            author.sender_id,
            1,
            room.base + lamport,
            0,
            "old",
            0,
            text,
            {founder.sender_id: founder.seq},
            b"",
        ]
    )
    return Message.from_wire(payload, author.sign(signed_bytes(room.room_id, payload)))


@pytest.mark.parametrize("read_only", [False, True])
def test_a_directory_of_format_3_is_read_as_it_is(tmp_path: Path, read_only: bool) -> None:
    """Format 3 entries (and announcements) name no versions: read as they are, counted
    by seq; a writable open marks the directory 4, so that the release before refuses
    it rather than misread the entries written since."""
    room = Room([ALICE, BOB])
    old = _legacy_entry(room, ALICE, 1, "written before")
    assert old.seen is None
    log = room.log()
    log.receive(old)
    new = log.compose(BOB, name="bob", text="written now", sent_at_ms=0)
    assert new.seen
    with Store(tmp_path) as store:
        store.save_messages(room.room_id, [*room.entries, old, new])
        store._db.execute("UPDATE meta SET value = 3 WHERE key = 'format'")
        store._db.commit()
    with Store(tmp_path, read_only=read_only) as store:
        again = restore_log(store, room.room_id)
        version = store._db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()[0]
    assert [m.text for m in again if m.is_text] == ["written before", "written now"]
    assert version == (3 if read_only else 4)


def test_a_new_directory_is_written_in_the_current_format(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        assert store._db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()[0] == FORMAT == 4
    with Store(tmp_path) as store:  # and it opens again
        assert store.rooms() == []


def test_a_directory_of_a_newer_format_is_refused(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        store._db.execute("UPDATE meta SET value = 99 WHERE key = 'format'")
        store._db.commit()
    with pytest.raises(StoreFormatError, match="newer p2pchat"):
        Store(tmp_path)


def test_the_store_is_in_wal_mode(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        mode = store._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_read_only_open_of_a_missing_store_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no p2pchat data"):
        Store(tmp_path / "nothing", read_only=True)


ALICE, BOB = Identity(b"\x0a" * 32), Identity(b"\x0b" * 32)


def _stable_on_announcements() -> tuple[Room, OrderedLog, list[Message]]:
    """A room of alice and bob: a line each, stable only by their clock announcements
    (neither entry's vector clock says the other was delivered)."""
    room = Room([ALICE, BOB])
    log = room.log()
    lines = [room.make(ALICE, 1, 1, text="a1"), room.make(BOB, 1, 1, text="b1")]
    log.receive_many(lines)
    assert log.stable_count < len(log)
    top = max(line.lamport for line in lines)
    for member, other in ((ALICE, BOB), (BOB, ALICE)):
        named = {other.sender_id: 1}
        links = log.links_of(named)
        log.observe_head(
            Head.announce(member, 1, 1, top, named, 1, room_id=room.room_id, delivered_links=links)
        )
    assert log.stable_count == len(log)
    return room, log, lines


def test_a_restart_shows_stable_what_was_stable(tmp_path: Path) -> None:
    room, log, lines = _stable_on_announcements()
    with Store(tmp_path) as store:
        announcements = log.take_new_announcements()
        assert sorted(head.sender_id for head in announcements) == sorted([ALICE.sender_id, BOB.sender_id])
        store.save_messages(room.room_id, [*room.entries, *lines], announcements=announcements)
        assert log.take_new_announcements() == []  # (taken: only newer ones come next)
    with Store(tmp_path, read_only=True) as store:
        again = restore_log(store, room.room_id)
    assert again.stable_count == len(again) == len(log)


def test_a_tampered_announcement_is_dropped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    room, log, lines = _stable_on_announcements()
    with Store(tmp_path) as store:
        store.save_messages(room.room_id, [*room.entries, *lines], announcements=log.take_new_announcements())
    with sqlite3.connect(tmp_path / DATABASE_NAME) as db:
        # Someone edits the data directory: bob's clock, and alice's delivered seqs.
        db.execute("UPDATE announcements SET clock_lamport = 99 WHERE sender = ?", (BOB.sender_id,))
        db.execute("UPDATE announcements SET delivered = 'text' WHERE sender = ?", (ALICE.sender_id,))
    db.close()
    caplog.set_level(logging.WARNING, logger="p2pchat.peer")
    with Store(tmp_path) as store:
        again = restore_log(store, room.room_id)
    assert again.stable_count < len(again)
    assert [r.getMessage() for r in caplog.records] == ["dropped 2 stored clock announcements: bad signature"]


def test_neighbours_addresses_are_kept_per_room_the_latest_first(tmp_path: Path) -> None:
    room, other = b"\x01" * 32, b"\x02" * 32
    with Store(tmp_path) as store:
        for n in range(MAX_ADDRESSES + 3):
            store.remember_address(room, f"ws://127.0.0.1:{9000 + n}/#{'ab' * 32}", now_ms=1000 + n)
        store.remember_address(room, f"ws://127.0.0.1:9000/#{'ab' * 32}", now_ms=5000)  # (up again)
        store.remember_address(other, f"ws://127.0.0.1:7000/#{'cd' * 32}", now_ms=1)
        kept = store.addresses(room)
    assert len(kept) == MAX_ADDRESSES
    assert kept[0].startswith("ws://127.0.0.1:9000/")  # (the latest up first)
    assert kept[1].startswith(f"ws://127.0.0.1:{9000 + MAX_ADDRESSES + 2}/")
    assert f"ws://127.0.0.1:9001/#{'ab' * 32}" not in kept  # (the oldest went)
    with Store(tmp_path, read_only=True) as store:
        assert store.addresses(other) == [f"ws://127.0.0.1:7000/#{'cd' * 32}"]


def _at(port: int) -> str:
    return f"ws://127.0.0.1:{port}/#{'ab' * 32}"


def test_members_addresses_learned_are_kept_after_the_neighbours_up_the_latest_learned_first(
    tmp_path: Path,
) -> None:
    # A peer keeps the addresses of the members its node learned of (never up for it),
    # so that a restart finds members even when every neighbour it had is gone for good.
    room, other = b"\x01" * 32, b"\x02" * 32
    learned = [_at(9100 + n) for n in range(MAX_LEARNED_ADDRESSES + 2)]
    with Store(tmp_path) as store:
        store.remember_address(room, _at(9000), now_ms=1)  # (up before any was learned)
        store.remember_learned(room, [_at(9000)], now_ms=2)
        for n, url in enumerate(learned):
            store.remember_learned(room, [url], now_ms=1000 + n)
        store.remember_learned(room, [learned[-1], learned[5]], now_ms=9999)  # (known already)
        store.remember_learned(other, [_at(7000)], now_ms=1)
        store.remember_address(room, learned[10], now_ms=5000)  # (up now)
    with Store(tmp_path, read_only=True) as store:
        kept = store.addresses(room)
        assert store.addresses(other) == [_at(7000)]
    # Up ones first (the latest up first), then the others the latest learned first; of
    # those learned, only the MAX_LEARNED_ADDRESSES latest.
    newest = [url for url in learned[::-1] if url != learned[10]]
    assert kept == [learned[10], _at(9000), *newest[: MAX_LEARNED_ADDRESSES - 1]]
    assert learned[0] not in kept and learned[1] not in kept


def test_an_address_no_longer_among_the_latest_up_stays_if_learned(tmp_path: Path) -> None:
    room = b"\x01" * 32
    with Store(tmp_path) as store:
        store.remember_learned(room, [_at(9000)], now_ms=1)
        for n in range(MAX_ADDRESSES + 1):
            store.remember_address(room, _at(9000 + n), now_ms=10 + n)
        kept = store.addresses(room)
    assert len(kept) == MAX_ADDRESSES + 1 and kept[-1] == _at(9000)  # (now only learned)


def test_a_directory_from_before_the_learned_addresses_reads_the_neighbours_and_gains_them(
    tmp_path: Path,
) -> None:
    room = b"\x01" * 32
    table = SCHEMA.index("CREATE TABLE IF NOT EXISTS addresses")
    before = SCHEMA[:table] + SCHEMA[table:].replace("    learned INTEGER NOT NULL DEFAULT 0,\n", "", 1)
    assert "learned" not in before
    with sqlite3.connect(tmp_path / DATABASE_NAME) as db:
        db.executescript(before)
        db.execute("INSERT INTO addresses (room, url, last_up) VALUES (?, ?, 5)", (room, _at(9000)))
    db.close()
    with Store(tmp_path, read_only=True) as store:
        assert store.addresses(room) == [_at(9000)]
    with Store(tmp_path) as store:
        store.remember_learned(room, [_at(9001)], now_ms=10)
        assert store.addresses(room) == [_at(9000), _at(9001)]


def test_a_directory_from_before_the_addresses_table_reads_none_and_gains_it(tmp_path: Path) -> None:
    without = (
        SCHEMA[: SCHEMA.index("CREATE TABLE IF NOT EXISTS addresses")]
        + SCHEMA[SCHEMA.index("CREATE TABLE IF NOT EXISTS meta") :]
    )
    with sqlite3.connect(tmp_path / DATABASE_NAME) as db:
        db.executescript(without)
    db.close()
    with Store(tmp_path, read_only=True) as store:
        assert store.addresses(b"\x01" * 32) == []
    with Store(tmp_path) as store:
        store.remember_address(b"\x01" * 32, "ws://127.0.0.1:1/#" + "ab" * 32, now_ms=1)
        assert store.addresses(b"\x01" * 32) == ["ws://127.0.0.1:1/#" + "ab" * 32]
