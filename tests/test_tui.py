"""The full-screen chat, driven as a user would: real pseudo-terminals, typed keys, read screens.

Each chat runs as its own process in a pty (pexpect); its output is fed into a
terminal emulator (pyte) and the tests read the emulated screen.
"""

from __future__ import annotations

import codecs
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pexpect
import pyte
import pytest

from p2pchat.address import peer_url
from p2pchat.identity import Identity
from p2pchat.store import Store

ROWS, COLUMNS = 30, 110

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a pty")


class Terminal:
    """A chat process in a pseudo-terminal, with an emulated screen."""

    def __init__(self, *args: str, rows: int = ROWS, columns: int = COLUMNS, verbose: bool = False) -> None:
        self.screen = pyte.Screen(columns, rows)
        self.stream = pyte.Stream(self.screen)
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        """Bytes to text across reads: a read may end inside a character (``∥`` is three
        bytes), and decoding each read alone would show its pieces as U+FFFD."""
        self.shown: set[str] = set()
        """Every screen line seen so far (see pump)."""
        env = {**os.environ, "TERM": "xterm-256color"}
        options = ["-v"] if verbose else []
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "p2pchat.cli", *options, "chat", *args],
            dimensions=(rows, columns),
            env=env,
        )

    def pump(self) -> None:
        while True:
            try:
                data = self.child.read_nonblocking(512, timeout=0.05)
            except (pexpect.TIMEOUT, pexpect.EOF):
                return
            self.stream.feed(self.decoder.decode(data))
            # Every line shown, however briefly: a notice can scroll out of the notice
            # rows before the test looks (a newcomer refused and redialing, say).
            self.shown.update(self.screen.display)

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

    def wait_until_shown(self, needle: str, timeout: float = 15.0) -> None:
        """Wait until ``needle`` is in a line the screen showed, now or at any time before."""
        self.wait_for(lambda _: any(needle in line for line in self.shown), timeout)

    def type(self, line: str) -> None:
        self.child.send(line + "\r")

    def line_with(self, needle: str) -> int:
        for row, line in enumerate(self.screen.display):
            if needle in line:
                return row
        raise AssertionError(f"{needle!r} not on screen")

    def url(self) -> str:
        # The join URL names the peer's id (the notice at the top has it in full).
        pattern = r"ws://127\.0\.0\.1:\d+/#[0-9a-f]{64}"
        match = re.search(pattern, self.wait_for(lambda s: re.search(pattern, s)))
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


def seeded_url(data_dir: Path, name: str) -> tuple[str, tuple[str, ...]]:
    """A data directory holding a fresh identity, a free port, and the join URL that
    names both; with the --listen option to use."""
    identity = Identity(os.urandom(32))
    store = Store(data_dir)
    try:
        store.save_identity(identity.seed, name)
    finally:
        store.close()
    port = int(closed_port_url().rsplit(":", 1)[1])
    return peer_url(f"ws://127.0.0.1:{port}", identity.sender_id), ("--listen", f"127.0.0.1:{port}")


@contextmanager
def two_chats(
    tmp_path: Path,
    *extra: str,
    names: tuple[str, str] = ("alice", "bob"),
    rows: int = ROWS,
    columns: int = COLUMNS,
) -> Iterator[tuple[Terminal, Terminal]]:
    first, second = names
    size = {"rows": rows, "columns": columns}
    listen: tuple[str, ...] = ()
    url = None
    if columns < COLUMNS:
        # Too small a screen to read the join URL (it names the key) off it: the test
        # picks the first chat's key and port.
        url, listen = seeded_url(tmp_path / "one", first)
    alice = Terminal("--name", first, "--data", str(tmp_path / "one"), *listen, *extra, **size)
    bob = None
    try:
        url = url or alice.url()
        bob = Terminal("--name", second, "--data", str(tmp_path / "two"), "--join", url, *extra, **size)
        # (On a small screen the notice scrolls away under the long URL: the status bar says it.)
        bob.wait_for(lambda s: f"connected to {first}" in s or re.search(r"│ p(eers)? 1 │", s))
        alice.wait_for(lambda s: "peers 1" in s or "p 1" in s)
        # Admitted (once its link stayed open a moment): both screens say so.
        for terminal in (alice, bob):
            # (bob, or ivy#20ea where both are ivy)
            terminal.wait_for(lambda s: re.search(rf"{second}(#[0-9a-f]{{4}})? joined", s))
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
        # Too narrow for the whole URL next to the counts: its peer id is cut.
        assert re.search(r"alice @ ws://127\.0\.0\.1:\d+/#[0-9a-f]{8}… │ peers 1", screen)
        bob.text()
        assert not any("trust on first use" in line for line in bob.shown)  # (a URL naming alice's id)
        bob.type("counting")
        alice.wait_for(lambda s: "messages 1" in s and "tentative 0" in s)


def test_invite_admits_a_newcomer_and_a_url_without_id_is_flagged(tmp_path: Path) -> None:
    wide = {"columns": 250}  # an invite URL on one row
    alice = Terminal("--name", "alice", "--data", str(tmp_path / "one"), "--private", **wide)
    others: list[Terminal] = []
    try:
        own = alice.url()
        alice.type("/invite")
        pattern = r"invite \(one newcomer, 24 h\): (ws://127\.0\.0\.1:\d+/#[0-9a-f]{64}\.[0-9a-f]+)"
        match = re.search(pattern, alice.wait_for(lambda s: re.search(pattern, s)))
        assert match and match.group(1).startswith(own + ".")
        bob = Terminal("--name", "bob", "--data", str(tmp_path / "two"), "--join", match.group(1), **wide)
        others.append(bob)
        alice.wait_for(lambda s: "* bob joined" in s)
        bob.text()
        assert not any("trust on first use" in line for line in bob.shown)
        plain = own.partition("#")[0]
        carol = Terminal("--name", "carol", "--data", str(tmp_path / "three"), "--join", plain, **wide)
        others.append(carol)
        notice = f"{plain} names no peer id: trusting whoever answers there (trust on first use)"
        carol.wait_until_shown(notice)  # (alice refuses her: the notice soon scrolls out)
    finally:
        for terminal in (*reversed(others), alice):
            terminal.close()


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
        own = alice.url()
        alice.type("/help")
        alice.wait_for(lambda s: "/join URL" in s and "tentative" in s and "/nick NAME" in s)
        alice.type("/peers")
        neighbour = r"bob\s+ws://127\.0\.0\.1:\d+/#[0-9a-f]{64}"
        alice.wait_for(lambda s: re.search(neighbour, s) or "(dialed us)" in s)
        bob.type("/who")
        bob.wait_for(
            lambda s: (
                re.search(r"alice\s+active, connected, (heard \d+ s ago|not heard from yet)", s)
                and re.search(r"bob\s+active, you", s)
            )
        )
        alice.type("/url")  # (the help pushed the start-up notice out; the status bar cuts the id)
        alice.wait_for(lambda s: "Others can join you with: --join" in s and own in s)
        bob.type("/nonsense")
        bob.wait_for(lambda s: "unknown command /nonsense" in s)


def test_leave_writes_a_leave_the_others_see_and_who_lists(tmp_path: Path) -> None:
    with two_chats(tmp_path) as (alice, bob):
        bob.type("/leave")
        bob.child.expect(pexpect.EOF, timeout=15)
        bob.child.close()
        assert bob.child.exitstatus == 0
        alice.wait_for(lambda s: "* bob left" in s)
        alice.type("/who")
        alice.wait_for(lambda s: "1 in the room (2 ever admitted)" in s and re.search(r"bob\s+left", s))


def test_join_command_connects_to_another_peer(tmp_path: Path) -> None:
    alice = Terminal("--name", "alice", "--data", str(tmp_path / "alice"))
    carol = Terminal("--name", "carol", "--data", str(tmp_path / "carol"))
    try:
        url = alice.url()
        carol.type(f"/join {url}")
        # One row: the id in the URL cut short (the name says who it is; /peers has it all).
        base, peer_id = url.split("#")
        carol.wait_for(lambda s: f"connected to alice ({base}#{peer_id[:8]}…)" in s)
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


# Screen rows, scrolling, compose ------------------------------------------------------------------

PAGE_UP, END, UP = "\x1b[5~", "\x1b[F", "\x1b[A"
ALT_ENTER = "\x1b\r"
WHEEL_UP, WHEEL_DOWN = "\x1b[<64;10;5M", "\x1b[<65;10;5M"  # xterm SGR mouse reports, column 10 row 5


def paste(terminal: Terminal, text: str) -> None:
    """Paste as a terminal does with bracketed paste on."""
    terminal.child.send("\x1b[200~" + text + "\x1b[201~")


def conversation_rows(terminal: Terminal) -> list[str]:
    """The rows above the status bar's notices: the message area."""
    lines = terminal.screen.display
    status = next(row for row, line in enumerate(lines) if " │ " in line)
    return lines[:status]


@pytest.mark.parametrize(("rows", "columns"), [(24, 80), (10, 40), (8, 40)], ids=["80x24", "40x10", "40x8"])
def test_wrapped_and_multi_line_messages_never_hide_the_newest_line(
    tmp_path: Path, rows: int, columns: int
) -> None:
    alice = Terminal("--name", "alice", "--data", str(tmp_path / "alice"), rows=rows, columns=columns)
    try:
        alice.wait_for(lambda s: " │ " in s)  # the status bar: the chat is up
        alice.type("x" * 30 + " " + "lorem ipsum dolor sit amet " * 3)  # 100+ characters: wraps
        paste(alice, "pasted one\npasted two\npasted three")
        alice.child.send("\r")
        for n in range(14):
            alice.type(f"short {n}")
        alice.type("NEWEST")
        screen = alice.wait_for(lambda s: "NEWEST" in s and re.search(r"\b(messages|m) 17\b", s))
        assert "NEWEST" in "\n".join(conversation_rows(alice)), screen
        # Words are not cut when a line wraps: every row of the long line ends on a whole word.
        alice.type("/quit")
        alice.child.expect(pexpect.EOF, timeout=10)
    finally:
        alice.close()


def test_a_long_line_wraps_at_word_boundaries(tmp_path: Path) -> None:
    alice = Terminal("--name", "alice", "--data", str(tmp_path / "alice"), rows=24, columns=40)
    try:
        alice.wait_for(lambda s: "ws://" in s)
        words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo"
        alice.type(words)
        alice.wait_for(lambda s: "kilo" in s)
        text = " ".join(line.strip() for line in conversation_rows(alice) if line.strip())
        for word in words.split(" "):
            assert re.search(rf"\b{word}\b", text), text
    finally:
        alice.close()


@pytest.mark.parametrize(("rows", "columns"), [(20, 50), (24, 80)], ids=["50x20", "80x24"])
def test_help_fits_the_screen_whole(tmp_path: Path, rows: int, columns: int) -> None:
    alice = Terminal("--name", "alice", "--data", str(tmp_path / "alice"), rows=rows, columns=columns)
    try:
        alice.wait_for(lambda s: " │ " in s)
        alice.type("/help")
        # Every command and the last hint at once, the first line not scrolled away.
        commands = ("/who", "/peers", "/join URL", "/url", "/invite", "/nick NAME", "/whois NAME")
        commands += ("/remove NAME", "/leave", "/quit")
        alice.wait_for(lambda s: all(command in s for command in commands) and "neither saw the other" in s)
    finally:
        alice.close()


def test_multi_line_compose_slash_escape_and_input_history(tmp_path: Path) -> None:
    with two_chats(tmp_path) as (alice, bob):
        alice.child.send("top line" + ALT_ENTER + "second line")
        alice.wait_for(lambda s: "> top line" in s and "second line" in s)
        alice.child.send("\r")
        screen = bob.wait_for(lambda s: "alice: top line" in s and "second line" in s)
        first = bob.line_with("alice: top line")
        second = bob.screen.display[first + 1]
        assert second.strip().startswith("second line")
        assert second.index("second") == bob.screen.display[first].index("top")  # indented under the text
        assert not re.match(r"\d\d:\d\d", second), screen  # no time or name: not a message of its own
        assert re.search(r"─+ \w{3} \d\d \w{3} \d{4} ─+", screen)  # the day, above its first message
        alice.type("//shrug is a command here")
        bob.wait_for(lambda s: "alice: /shrug is a command here" in s)
        alice.child.send(UP)
        alice.wait_for(lambda s: "> //shrug is a command here" in s)


def test_scrolling_up_shows_a_new_below_marker_and_end_returns(tmp_path: Path) -> None:
    with two_chats(tmp_path, rows=24, columns=80) as (alice, bob):
        bob.child.send("".join(f"line {n}\r" for n in range(40)))
        alice.wait_for(lambda s: "bob: line 39" in s)
        alice.child.send(PAGE_UP)
        alice.wait_for(lambda s: "bob: line 39" not in s and "more below" in s)
        bob.type("fresh news")
        screen = alice.wait_for(lambda s: "1 new below" in s)
        assert "fresh news" not in screen
        alice.child.send(END)
        screen = alice.wait_for(lambda s: "bob: fresh news" in s)
        assert "new below" not in screen
        assert alice.line_with("bob: fresh news") > alice.line_with("bob: line 39")
        alice.child.send(WHEEL_UP)  # the mouse wheel, over the messages
        alice.wait_for(lambda s: "bob: fresh news" not in s and "more below" in s)
        alice.child.send(WHEEL_DOWN)
        alice.wait_for(lambda s: "bob: fresh news" in s and "more below" not in s)


def test_a_late_message_inserted_above_the_screen_is_announced(tmp_path: Path) -> None:
    # 1.5 s on every link: bob's line is written before alice's lines arrive, and
    # alice's lines before bob's: bob's sorts above most of hers, off her small screen.
    with two_chats(tmp_path, "--simulate-delay", "1500-1500", rows=10, columns=60) as (alice, bob):
        bob.type("written early")
        alice.child.send("".join(f"a{n}\r" for n in range(10)))
        screen = alice.wait_for(lambda s: "inserted above" in s, timeout=30)
        assert "bob" in screen
        alice.child.send(PAGE_UP * 3)
        alice.wait_for(lambda s: "bob: written early" in s)


# Names -------------------------------------------------------------------------------------------


def test_two_people_with_one_name_are_told_apart_by_key_fingerprint(tmp_path: Path) -> None:
    with two_chats(tmp_path, names=("ivy", "ivy")) as (first, second):
        first.type("I am the first ivy")
        second.type("I am the second ivy")
        pattern = r"ivy#([0-9a-f]{4}): I am the (first|second) ivy"
        screen = first.wait_for(lambda s: len(re.findall(pattern, s)) == 2)
        fingerprints = dict((which, print_) for print_, which in re.findall(pattern, screen))
        assert fingerprints["first"] != fingerprints["second"]
        # The membership lines tell them apart too: the second ivy's admission.
        first.wait_for(lambda s: f"* ivy#{fingerprints['second']} joined" in s)
        first.type("/whois ivy")
        screen = first.wait_for(
            lambda s: len(re.findall(r"ivy#[0-9a-f]{4}( \(you\))?: [0-9a-f]{64}", s)) == 2
        )
        assert f"ivy#{fingerprints['first']} (you)" in screen
        second.wait_for(lambda s: f"ivy#{fingerprints['second']} @ ws://" in s)  # the status bar too
        # /remove takes the name as shown, or the start of a key, as /whois shows it.
        first.type("/remove IVY")
        first.wait_until_shown("/remove: more than one member is called IVY (ivy#")
        second_key = re.search(rf"ivy#{fingerprints['second']}: ([0-9a-f]{{64}})", screen)
        assert second_key
        first.type(f"/remove {second_key.group(1)[:6]}")
        # (Found: in a room of two, the proposal itself is refused.)
        first.wait_until_shown("/remove: a removal needs the answers of a strict majority")


def test_nick_changes_the_name_others_see(tmp_path: Path) -> None:
    with two_chats(tmp_path) as (alice, bob):
        alice.type("/nick alicia")
        alice.wait_for(lambda s: "you are now alicia" in s and "alicia @ ws://" in s)
        alice.type("new name, same key")
        bob.wait_for(lambda s: "alicia: new name, same key" in s)
        alice.type("/nick")
        alice.wait_for(lambda s: "/nick: a name can't be empty" in s)


# Dial failures and logging -------------------------------------------------------------------


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"ws://127.0.0.1:{port}"


def test_an_unreachable_peer_is_shown_with_the_reason_and_the_retry(tmp_path: Path) -> None:
    url = closed_port_url()
    alice = Terminal("--name", "alice", "--data", str(tmp_path / "alice"), "--join", url, verbose=True)
    try:
        screen = alice.wait_for(lambda s: f"can't reach {url}: connection refused; retrying in" in s)
        assert "can't reach 1" in screen  # marked in the status bar
        # -v log lines appear inside the screen, as notices, never drawn over it.
        alice.wait_for(lambda s: "log info: can't reach" in s)
        alice.type("/join ws://127.0.0.1")
        alice.wait_for(lambda s: "/join: expected ws://HOST:PORT" in s)
    finally:
        alice.close()


def test_a_startup_mistake_ends_the_screen_with_one_clear_message(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        alice = Terminal(
            "--name", "alice", "--data", str(tmp_path / "alice"), "--listen", f"127.0.0.1:{port}"
        )
        alice.child.expect(pexpect.EOF, timeout=15)
        output = alice.child.before.decode("utf-8", "replace")
        alice.child.close()
    assert alice.child.exitstatus == 1
    assert "the port is already in use" in output
    assert "Traceback" not in output


def test_a_second_chat_on_the_same_data_directory_is_refused(tmp_path: Path) -> None:
    first = Terminal("--name", "alice", "--data", str(tmp_path / "alice"))
    try:
        first.wait_for(lambda s: "ws://" in s)
        second = Terminal("--name", "alice", "--data", str(tmp_path / "alice"))
        second.child.expect(pexpect.EOF, timeout=15)
        output = second.child.before.decode("utf-8", "replace")
        second.child.close()
        assert second.child.exitstatus == 1
        assert f"this data directory is in use by process {first.child.pid}" in output
    finally:
        first.close()


def test_example_chat_client_quits_on_ctrl_c_without_a_traceback() -> None:
    script = Path(__file__).resolve().parent.parent / "examples" / "chat_peer.py"
    child = pexpect.spawn(sys.executable, [str(script), "alice"], dimensions=(ROWS, COLUMNS))
    try:
        child.expect("listening at ws://", timeout=15)
        child.sendcontrol("c")  # while it waits for a line of input
        child.expect(pexpect.EOF, timeout=10)
        output = child.before.decode("utf-8", "replace")
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert "Traceback" not in output


def test_a_line_typed_before_admission_is_said_unsent_at_the_exit(tmp_path: Path) -> None:
    # Nobody answers at the --join address: bob is never admitted, his line waits.
    bob = Terminal("--name", "bob", "--data", str(tmp_path / "bob"), "--join", "ws://127.0.0.1:1/")
    try:
        bob.wait_for(lambda s: "bob @" in s)
        bob.type("hello, anyone?")
        bob.wait_until_shown("(queued")
    finally:
        assert bob.close() == 0
    after = bob.child.before.decode("utf-8", "replace") if isinstance(bob.child.before, bytes) else ""
    assert "not sent (the peer stopped before it could write it): hello, anyone?" in after


def test_membership_lines_wrap_within_the_screen() -> None:
    from datetime import datetime

    from prompt_toolkit.utils import get_cwidth

    from p2pchat.tui import ChatScreen

    text = "alice proposes to remove dave, erin and frank · dave, erin and frank were removed: silent"
    for width in (20, 33, 40, 57):
        rows = ChatScreen._membership_rows(text, datetime(2026, 11, 28, 4, 5, 6), True, width)
        assert len(rows) > 1
        assert all(get_cwidth("".join(piece for _, piece in row)) <= width for row in rows), (width, rows)
        shown = " ".join("".join(piece for _, piece in row) for row in rows).split()
        assert shown == ["04:05:06", "*", *text.split(), "·"]  # (nothing lost, no word cut)


def test_a_proven_liars_lines_carry_a_mark_and_a_notice_says_what_it_means() -> None:
    from types import SimpleNamespace

    from test_membership import PEOPLE, bob_equivocates, three_members

    from p2pchat.tui import ChatScreen

    mesh = three_members()
    genuine = bob_equivocates(mesh)
    mesh.run(4.0)
    alice = mesh.nodes[0]
    screen = ChatScreen(peer=SimpleNamespace(node=alice, log=alice.log))  # type: ignore[arg-type]
    for message in alice.log:
        screen.learn_name(message.sender_id, message.name, message.seq)
    screen._proof_found(screen.peer)  # type: ignore[arg-type]
    screen._proof_found(screen.peer)  # type: ignore[arg-type]  # (said once)
    told = [n.text for n in screen.notices if "≠" in n.text]
    said = f"! bob signed two versions of its entry {genuine.seq}: its lines marked ≠ may read otherwise"
    assert told == [f"{said}, or be missing, on other peers"]
    for index, message in enumerate(alice.log):
        if message.is_text:
            shown = "".join(piece for row in screen.rows_of(index, 80) for _, piece in row)
            assert ("≠" in shown) == (message.sender_id == PEOPLE[1].sender_id), shown
