"""The ``p2pchat`` command line, driven as real subprocesses.

``p2pchat chat --json`` is a contract for other programs: the first stdout line is a
``ready`` event with the peer's URL and id, every stdin line becomes a message, and
every delivery is a ``message`` object with fixed keys and types. Two processes that
chat must agree on the order. End of stdin leaves the peer running; SIGINT and
SIGTERM stop it cleanly with exit code 0. ``p2pchat log --data DIR --json`` prints
the stored log afterwards. Bad arguments are usage errors (exit code 2).

Every process is killed in a finalizer, and every wait has a timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

TIMEOUT = 15.0
MESSAGE_KEYS = {
    "event": str,
    "sender": str,
    "name": str,
    "seq": int,
    "lamport": int,
    "text": str,
    "sent_at": str,
    "index": int,
    "concurrent": bool,
    "stable": bool,
}
Event = dict[str, Any]
URL = re.compile(r"ws://127\.0\.0\.1:(\d+)")


def command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "p2pchat.cli", *map(str, args)]


def environment(tmp_path: Path) -> dict[str, str]:
    # A stray default data directory must land in tmp_path, never in the real home.
    return {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg"), "PYTHONUNBUFFERED": "1"}


class ChatProcess:
    """``p2pchat chat --json`` in a subprocess, its stdout parsed line by line."""

    def __init__(self, tmp_path: Path, name: str, *extra: str | Path) -> None:
        self.data = tmp_path / name
        self.proc = subprocess.Popen(
            command("chat", "--name", name, "--listen", "127.0.0.1:0", "--data", self.data, "--json", *extra),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=environment(tmp_path),
        )
        self.events: list[Event] = []
        self.stderr: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()
        self.ready = self.wait_for(lambda e: True)

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    @property
    def url(self) -> str:
        return str(self.ready["url"])

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float = TIMEOUT) -> Event:
        """Read events until one matches ``predicate``; all are kept in ``events``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(remaining, 0.001))
            except queue.Empty:
                pytest.fail(f"timed out; events so far: {self.events}; stderr: {''.join(self.stderr)}")
            if line is None:
                pytest.fail(f"stdout ended early; events: {self.events}; stderr: {''.join(self.stderr)}")
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                pytest.fail(f"stdout line is not JSON: {line!r}")
            assert isinstance(event, dict) and isinstance(event.get("event"), str), line
            self.events.append(event)
            if predicate(event):
                return event

    def wait_messages(self, count: int) -> list[Event]:
        while len(self.messages()) < count:
            self.wait_for(lambda e: e["event"] == "message")
        return self.messages()

    def messages(self) -> list[Event]:
        return [e for e in self.events if e["event"] == "message"]

    def say(self, *lines: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("".join(f"{line}\n" for line in lines))
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Signal the process and wait for it; read the rest of stdout."""
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout=TIMEOUT)
        while (line := self._lines.get(timeout=TIMEOUT)) is not None:
            self.events.append(json.loads(line))
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None and not stream.closed:
                with contextlib.suppress(BrokenPipeError):
                    stream.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., ChatProcess]]:
    started: list[ChatProcess] = []

    def start(name: str, *extra: str | Path) -> ChatProcess:
        process = ChatProcess(tmp_path, name, *extra)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def final_order(events: list[Event]) -> list[tuple[str, int]]:
    """The log a consumer rebuilds by inserting each delivery at its ``index``."""
    order: list[tuple[str, int]] = []
    for event in events:
        if event["event"] == "message":
            order.insert(event["index"], (event["sender"], event["seq"]))
    return order


def check_message_object(obj: Event) -> None:
    for key, kind in MESSAGE_KEYS.items():
        assert key in obj, f"{key!r} missing from {obj}"
        assert type(obj[key]) is kind, f"{key!r} should be {kind.__name__} in {obj}"
    assert obj["event"] == "message"
    assert re.fullmatch(r"[0-9a-f]{64}", obj["sender"])
    assert obj["seq"] >= 1 and obj["lamport"] >= 1 and obj["index"] >= 0
    assert obj["sent_at"].endswith("Z")
    sent_at = datetime.fromisoformat(obj["sent_at"].replace("Z", "+00:00"))
    assert sent_at.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - sent_at) < timedelta(minutes=5)


def run_cli(tmp_path: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=TIMEOUT,
        env=environment(tmp_path),
    )


# chat --json -----------------------------------------------------------------------------------


def test_ready_is_the_first_line(spawn: Callable[..., ChatProcess]) -> None:
    alice = spawn("alice")
    assert alice.events[0] is alice.ready
    assert alice.ready["event"] == "ready"
    match = URL.fullmatch(alice.ready["url"])
    assert match and 0 < int(match.group(1)) < 65536
    assert re.fullmatch(r"[0-9a-f]{64}", alice.ready["peer_id"])
    assert alice.stop() == 0


def test_two_processes_chat_and_agree_on_the_order(spawn: Callable[..., ChatProcess]) -> None:
    alice = spawn("alice")
    bob = spawn("bob", "--join", alice.url)
    alice.say("hello from alice", "how are you?")
    bob.say("hi from bob")
    alice.wait_messages(3)
    bob.wait_messages(3)
    for process in (alice, bob):
        for obj in process.messages():
            check_message_object(obj)
    texts = {m["text"] for m in alice.messages()}
    assert texts == {"hello from alice", "how are you?", "hi from bob"}
    senders = {m["text"]: m["sender"] for m in bob.messages()}
    assert senders["hello from alice"] == alice.ready["peer_id"]
    assert senders["hi from bob"] == bob.ready["peer_id"]
    assert {m["name"] for m in bob.messages()} == {"alice", "bob"}
    order = final_order(alice.events)
    assert order == final_order(bob.events)
    by_id = {(m["sender"], m["seq"]): m for m in alice.messages()}
    assert order == sorted(order, key=lambda i: (by_id[i]["lamport"], i[0]))
    assert alice.stop(signal.SIGINT) == 0
    assert bob.stop(signal.SIGTERM) == 0


def test_closing_stdin_leaves_the_peer_running(spawn: Callable[..., ChatProcess]) -> None:
    alice = spawn("alice")
    alice.say("before the end of input")
    alice.close_stdin()
    alice.wait_messages(1)
    bob = spawn("bob", "--join", alice.url)
    bob.say("are you still there?")
    received = alice.wait_for(lambda e: e["event"] == "message" and e["text"] == "are you still there?")
    assert received["sender"] == bob.ready["peer_id"]
    assert alice.proc.poll() is None
    bob.wait_messages(2)
    assert alice.stop() == 0
    assert bob.stop() == 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signals_stop_the_peer_with_exit_code_0(spawn: Callable[..., ChatProcess], signum: int) -> None:
    alice = spawn("alice")
    alice.say("one message")
    alice.wait_messages(1)
    assert alice.stop(signum) == 0
    assert "Traceback" not in "".join(alice.stderr)


def test_log_prints_the_stored_log_after_the_peer_stopped(
    spawn: Callable[..., ChatProcess], tmp_path: Path
) -> None:
    alice = spawn("alice")
    bob = spawn("bob", "--join", alice.url)
    alice.say("first", "second")
    bob.say("third")
    alice.wait_messages(3)
    bob.wait_messages(3)
    assert alice.stop() == 0
    assert bob.stop() == 0
    expected = final_order(alice.events)
    for process in (alice, bob):
        result = run_cli(tmp_path, "log", "--data", process.data, "--json")
        assert result.returncode == 0, result.stderr
        objects = [json.loads(line) for line in result.stdout.splitlines()]
        for obj in objects:
            check_message_object(obj)
        assert [o["index"] for o in objects] == list(range(3))
        assert [(o["sender"], o["seq"]) for o in objects] == expected
        live = {(m["sender"], m["seq"]): m for m in alice.messages()}
        for obj in objects:
            seen = live[(obj["sender"], obj["seq"])]
            assert (obj["text"], obj["lamport"], obj["sent_at"]) == (
                seen["text"],
                seen["lamport"],
                seen["sent_at"],
            )


def test_restarted_peer_replays_its_history(spawn: Callable[..., ChatProcess]) -> None:
    alice = spawn("alice")
    alice.say("kept on disk")
    first = alice.wait_messages(1)[0]
    assert alice.stop() == 0
    again = spawn("alice")
    assert again.ready["peer_id"] == alice.ready["peer_id"]
    replayed = again.wait_messages(1)[0]
    assert replayed["replayed"] is True
    assert (replayed["sender"], replayed["seq"], replayed["text"]) == (
        first["sender"],
        first["seq"],
        first["text"],
    )
    again.say("after the restart")
    new = again.wait_for(lambda e: e["event"] == "message" and e["text"] == "after the restart")
    assert new["seq"] == 2 and new["lamport"] > first["lamport"]
    assert again.stop() == 0


# log and usage errors ----------------------------------------------------------------------------


def test_log_of_a_missing_data_directory_fails_clearly(tmp_path: Path) -> None:
    missing = tmp_path / "nobody-here"
    result = run_cli(tmp_path, "log", "--data", missing, "--json")
    assert result.returncode != 0
    assert str(missing) in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not missing.exists(), "reading a log must not create the directory"


@pytest.mark.parametrize(
    "arguments",
    [
        ["--listen", "nonsense"],
        ["--listen", "127.0.0.1:99999"],
        ["--listen", "127.0.0.1:port"],
        ["--join", "http://127.0.0.1:9000"],
        ["--join", "ws://127.0.0.1"],
        ["--join", "not a url"],
    ],
    ids=["listen-no-port", "listen-port-range", "listen-port-text", "join-http", "join-no-port", "join-junk"],
)
def test_bad_listen_or_join_is_a_usage_error(tmp_path: Path, arguments: list[str]) -> None:
    result = run_cli(tmp_path, "chat", "--name", "x", "--data", tmp_path / "x", "--json", *arguments)
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert arguments[0] in result.stderr
    assert result.stdout == ""
