"""The full-screen chat, driven as a user would: real pseudo-terminals, typed keys, read screens.

Each chat runs as its own process in a pty (pexpect); its output is fed into a
terminal emulator (pyte) and the tests read the emulated screen.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pexpect
import pyte
import pytest

ROWS, COLUMNS = 30, 110

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a pty")


class Terminal:
    """A chat process in a pseudo-terminal, with an emulated screen."""

    def __init__(self, *args: str) -> None:
        self.screen = pyte.Screen(COLUMNS, ROWS)
        self.stream = pyte.Stream(self.screen)
        env = {**os.environ, "TERM": "xterm-256color"}
        self.child = pexpect.spawn(
            sys.executable, ["-m", "p2pchat.cli", "chat", *args], dimensions=(ROWS, COLUMNS), env=env
        )

    def pump(self) -> None:
        while True:
            try:
                data = self.child.read_nonblocking(65536, timeout=0.05)
            except (pexpect.TIMEOUT, pexpect.EOF):
                return
            self.stream.feed(data.decode("utf-8", "replace"))

    def text(self) -> str:
        self.pump()
        return "\n".join(self.screen.display)

    def wait_for(self, predicate: Callable[[str], object], timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.text()
            if predicate(screen):
                return screen
            time.sleep(0.05)
        raise AssertionError(f"screen never matched; it shows:\n{self.text()}")

    def type(self, line: str) -> None:
        self.child.send(line + "\r")

    def line_with(self, needle: str) -> int:
        for row, line in enumerate(self.screen.display):
            if needle in line:
                return row
        raise AssertionError(f"{needle!r} not on screen")

    def url(self) -> str:
        match = re.search(r"ws://127\.0\.0\.1:\d+", self.wait_for(lambda s: "ws://" in s))
        assert match
        return match.group(0)

    def close(self) -> int | None:
        if self.child.isalive():
            self.child.sendcontrol("c")
            try:
                self.child.expect(pexpect.EOF, timeout=10)
            except pexpect.TIMEOUT:
                self.child.kill(9)
        self.child.close()
        return self.child.exitstatus


@contextmanager
def two_chats(tmp_path: Path, *extra: str) -> Iterator[tuple[Terminal, Terminal]]:
    alice = Terminal("--name", "alice", "--data", str(tmp_path / "alice"), *extra)
    bob = None
    try:
        bob = Terminal("--name", "bob", "--data", str(tmp_path / "bob"), "--join", alice.url(), *extra)
        bob.wait_for(lambda s: "connected to alice" in s)
        alice.wait_for(lambda s: "peers 1" in s)
        yield alice, bob
    finally:
        for terminal in (bob, alice):
            if terminal is not None:
                terminal.close()


def test_two_chats_talk_and_show_the_same_order(tmp_path: Path) -> None:
    with two_chats(tmp_path) as (alice, bob):
        bob.type("hello from bob")
        alice.wait_for(lambda s: "bob: hello from bob" in s)
        alice.type("hi bob")
        for terminal in (alice, bob):
            terminal.wait_for(lambda s: "alice: hi bob" in s and "bob: hello from bob" in s)
            assert terminal.line_with("bob: hello from bob") < terminal.line_with("alice: hi bob")
        # Each line shows the sender's local display time.
        assert re.search(r"\d\d:\d\d:\d\d bob: hello from bob", alice.text())


def test_status_bar_shows_address_peers_and_tentative_count(tmp_path: Path) -> None:
    with two_chats(tmp_path) as (alice, bob):
        screen = alice.wait_for(lambda s: "peers 1" in s)
        assert re.search(r"alice @ ws://127\.0\.0\.1:\d+", screen)
        bob.type("counting")
        alice.wait_for(lambda s: "messages 1" in s and "tentative 0" in s)


def test_membership_entries_show_as_notices_not_chat_lines(tmp_path: Path) -> None:
    with two_chats(tmp_path) as (alice, bob):
        for terminal in (alice, bob):
            screen = terminal.wait_for(lambda s: "* bob joined" in s)
            assert '* alice founded the room "alice\'s room"' in screen
            assert "alice: bob" not in screen  # the admission is not drawn as a line of alice's
        bob.type("counting")
        alice.wait_for(lambda s: "bob: counting" in s and "messages 1 " in s)


def test_concurrent_messages_carry_a_mark_and_both_sides_agree(tmp_path: Path) -> None:
    # A simulated 300 ms link delay: both lines are written before either arrives.
    with two_chats(tmp_path, "--simulate-delay", "300-300") as (alice, bob):
        # Both lines typed, then Enter in both at the same moment: neither author has
        # seen the other's line when writing its own.
        alice.child.send("left")
        bob.child.send("right")
        alice.wait_for(lambda s: "> left" in s)
        bob.wait_for(lambda s: "> right" in s)
        alice.child.send("\r")
        bob.child.send("\r")
        for terminal in (alice, bob):
            terminal.wait_for(lambda s: "alice: left ∥" in s and "bob: right ∥" in s)
        assert (alice.line_with("left") < alice.line_with("right")) == (
            bob.line_with("left") < bob.line_with("right")
        )


def test_tentative_lines_become_stable(tmp_path: Path) -> None:
    with two_chats(tmp_path) as (alice, bob):
        alice.type("settle down")
        # "·" marks a tentative line; once bob's clock is heard, the line is final.
        bob.wait_for(lambda s: "alice: settle down" in s)
        for terminal in (alice, bob):
            terminal.wait_for(lambda s: "settle down" in s and "settle down  ·" not in s)


def test_commands_help_who_and_peers(tmp_path: Path) -> None:
    with two_chats(tmp_path) as (alice, bob):
        alice.type("/help")
        alice.wait_for(lambda s: "/join URL" in s and "tentative" in s)
        alice.type("/peers")
        alice.wait_for(lambda s: re.search(r"bob\s+ws://127\.0\.0\.1:\d+", s) or "(dialed us)" in s)
        bob.type("/who")
        bob.wait_for(lambda s: re.search(r"alice\s+[0-9a-f]{16}", s))
        bob.type("/nonsense")
        bob.wait_for(lambda s: "unknown command /nonsense" in s)


def test_join_command_connects_to_another_peer(tmp_path: Path) -> None:
    alice = Terminal("--name", "alice", "--data", str(tmp_path / "alice"))
    carol = Terminal("--name", "carol", "--data", str(tmp_path / "carol"))
    try:
        carol.type(f"/join {alice.url()}")
        carol.wait_for(lambda s: "connected to alice" in s)
        alice.wait_for(lambda s: "peers 1" in s)
    finally:
        carol.close()
        alice.close()


def test_quit_leaves_with_exit_code_zero(tmp_path: Path) -> None:
    alice = Terminal("--name", "alice", "--data", str(tmp_path / "alice"))
    alice.wait_for(lambda s: "ws://" in s)
    alice.type("/quit")
    alice.child.expect(pexpect.EOF, timeout=10)
    alice.child.close()
    assert alice.child.exitstatus == 0
