"""The SQLite store: identity, messages and clock survive reopening."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pchat.identity import Identity
from p2pchat.log import OrderedLog
from p2pchat.peer import PeerConfig, load_node
from p2pchat.store import Store

ME = Identity(b"\x05" * 32)


def history(count: int) -> list:  # type: ignore[type-arg]
    log = OrderedLog()
    messages = []
    for i in range(count):
        message = log.compose(ME, name="me", text=f"m{i}", sent_at_ms=i)
        log.receive(message)
        messages.append(message)
    return messages


def test_messages_round_trip_byte_for_byte(tmp_path: Path) -> None:
    messages = history(5)
    with Store(tmp_path) as store:
        assert store.save_messages(messages[:3], durable=True) == 3
        assert store.save_messages(messages) == 2  # the first three are already there
    with Store(tmp_path) as store:
        loaded = list(store.load_messages())
        assert [(m.payload, m.signature) for m in loaded] == [(m.payload, m.signature) for m in messages]
        assert store.clock() == messages[-1].lamport
        assert store.message_count() == 5


def test_identity_and_history_come_back_with_the_node(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        node = load_node("alice", store, PeerConfig())
        first = node.compose("hello", 0)
        store.save_messages([first], durable=True)
        node.publish(first, 0.0)
    with Store(tmp_path) as store:
        again = load_node("alice", store, PeerConfig())
    assert again.identity.sender_id == node.identity.sender_id
    assert [m.text for m in again.log] == ["hello"]
    assert again.compose("next", 0).seq == 2  # seq continues, never reused


def test_the_store_is_in_wal_mode(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        mode = store._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_read_only_open_of_a_missing_store_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no p2pchat data"):
        Store(tmp_path / "nothing", read_only=True)
