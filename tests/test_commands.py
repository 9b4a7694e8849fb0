"""Commands in the line-oriented chats: what a stdin line is, and whom /remove names."""

from __future__ import annotations

import pytest
from roomkit import Room

from p2pchat.commands import Command, member_called, parse_line
from p2pchat.identity import Identity

ALICE, BOB, OTHER_BOB = (Identity(bytes([0x61 + i]) * 32) for i in range(3))


def test_a_line_is_text_unless_it_names_a_command() -> None:
    assert parse_line("hello /leave") == "hello /leave"
    assert parse_line("/leave") == Command("leave")
    assert parse_line("/remove  bob ") == Command("remove", "bob")
    assert parse_line("/invite") == Command("invite")
    assert parse_line("//leave") == "/leave"  # (the escape: sent as text)
    assert parse_line("//") == "/"


def test_an_unknown_command_is_an_error_never_a_message() -> None:
    with pytest.raises(ValueError, match=r"unknown command /leeve .*//leeve sends the line as text"):
        parse_line("/leeve")
    with pytest.raises(ValueError, match="unknown command / "):
        parse_line("/ x")


def test_remove_names_a_member_by_name_or_by_the_start_of_its_id() -> None:
    room = Room([ALICE, BOB])
    log = room.log()
    names = {member: info.name for member, info in log.member_info().items()}
    assert names[BOB.sender_id] == "member"  # (every member of the test room has this name)
    with pytest.raises(ValueError, match="more than one member is called MEMBER"):
        member_called(log, "MEMBER")
    assert member_called(log, BOB.sender_id.hex()[:6]) == BOB.sender_id
    short = BOB.sender_id.hex()[:3]  # (too short to be an id)
    with pytest.raises(ValueError, match=f"no active member is called {short}"):
        member_called(log, short)
    with pytest.raises(ValueError, match="no active member is called carol"):
        member_called(log, "carol")
    with pytest.raises(ValueError, match="whom"):
        member_called(log, "")
    lone = Room([OTHER_BOB]).log()
    assert member_called(lone, "Member") == OTHER_BOB.sender_id


def test_remove_takes_a_member_as_a_chat_shows_it() -> None:
    log = Room([ALICE, BOB, OTHER_BOB]).log()
    bob, other = BOB.sender_id, OTHER_BOB.sender_id
    names = {ALICE.sender_id: "alice", bob: "bob", other: "Bob"}
    labels = {ALICE.sender_id: "alice", bob: f"bob#{bob.hex()[:4]}", other: f"Bob#{other.hex()[:4]}"}
    with pytest.raises(ValueError, match=rf"called bob \(bob#{bob.hex()[:4]}, Bob#{other.hex()[:4]}\)"):
        member_called(log, "bob", names=names, labels=labels)
    assert member_called(log, f"BOB#{bob.hex()[:4]}", names=names, labels=labels) == bob
    assert member_called(log, " Alice ", names=names, labels=labels) == ALICE.sender_id
    assert member_called(log, f"#{other.hex()[:5]}", names=names) == other
    # Without the labels (the line chats), name#digits still tells two bobs apart.
    assert member_called(log, f"bob#{other.hex()[:2]}", names=names) == other
    with pytest.raises(ValueError, match=rf"\(bob#{bob.hex()[:8]}, Bob#{other.hex()[:8]}\)"):
        member_called(log, "bob", names=names)
    with pytest.raises(ValueError, match="no active member is called bob#zz"):
        member_called(log, "bob#zz", names=names)
