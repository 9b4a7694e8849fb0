"""The command line as people really use it: every ordinary mistake is one or two clear
lines and a non-zero exit code, never a traceback; one process per data directory;
dial failures said out loud; ``p2pchat log`` safe to read; help that helps.

Every case runs the real ``p2pchat`` command in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_cli import command, environment, found_room_in_store, run_cli

TIMEOUT = 30.0
LOG_LINES = 2000


def run(tmp_path: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """The real CLI, as test_cli runs it, with more time (some mistakes wait on the network)."""
    return run_cli(tmp_path, *args, timeout=TIMEOUT)


@contextmanager
def port_in_use() -> Iterator[int]:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield busy.getsockname()[1]


@dataclass
class Mistake:
    """A command line with a mistake; ``{tmp}`` and ``{port}`` are filled in."""

    args: list[str]
    message: str
    code: int = 1
    setup: Callable[[Path], None] = lambda tmp: None
    wrap: list[str] = field(default_factory=list)
    """A command to run it under (e.g. in a network namespace of its own)."""
    read_only: str = ""
    """A path under ``{tmp}`` made read-only. Permissions do not stop root, so as root it
    is bind-mounted read-only in a mount namespace of the command's own."""


def make_file(tmp: Path) -> None:
    (tmp / "file").write_text("not a directory")


def make_directory(tmp: Path) -> None:
    (tmp / "ro").mkdir()


def make_database(tmp: Path) -> None:
    subprocess.run(
        [sys.executable, "-c", "import sys; from p2pchat.store import Store; Store(sys.argv[1]).close()",
         str(tmp / "rodb")],
        check=True, timeout=TIMEOUT,
    )  # fmt: skip


def skip_unless_it_works(prefix: list[str]) -> None:
    """Skip the test if the command ``prefix`` (see read_only) cannot run here."""
    if prefix and (
        shutil.which(prefix[0]) is None or subprocess.run([*prefix, "true"], check=False).returncode
    ):
        pytest.skip(f"needs {' '.join(prefix[:2])} to work here")


def read_only(path: Path) -> list[str]:
    """Make ``path`` read-only; for root, the command prefix that does it."""
    if os.geteuid() != 0:
        path.chmod(0o555 if path.is_dir() else 0o444)
        return []
    remount = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" && exec "$@"'
    return ["unshare", "--mount", "sh", "-c", remount, str(path)]


CHAT = ["chat", "--name", "x", "--json"]
MISTAKES = {
    "port-in-use": Mistake([*CHAT, "--data", "{tmp}/a", "--listen", "127.0.0.1:{port}"], "already in use"),
    "unknown-host": Mistake(
        [*CHAT, "--data", "{tmp}/a", "--listen", "nosuch.invalid:0"],
        "unknown host",
        # No network at all: the lookup fails here, nothing is sent. (Without root, in a user
        # namespace of our own.)
        wrap=["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "--map-root-user", "--net"],
    ),
    "address-not-here": Mistake(
        [*CHAT, "--data", "{tmp}/a", "--listen", "198.51.100.77:0"], "not on this machine"
    ),
    "data-is-a-file": Mistake([*CHAT, "--data", "{tmp}/file"], "is a file", setup=make_file),
    "data-under-a-file": Mistake([*CHAT, "--data", "{tmp}/file/sub"], "is a file", setup=make_file),
    "read-only-directory": Mistake(
        [*CHAT, "--data", "{tmp}/ro"], "can't write the data directory", setup=make_directory, read_only="ro"
    ),
    "read-only-database": Mistake(
        [*CHAT, "--data", "{tmp}/rodb"], "read-only", setup=make_database, read_only="rodb/p2pchat.sqlite3"
    ),
    "empty-name": Mistake(["chat", "--name", "", "--json"], "name can't be empty", code=2),
    "name-with-escape": Mistake(["chat", "--name", "a\x1b[2J", "--json"], "control characters", code=2),
    "name-with-hash": Mistake(["chat", "--name", "ivy#3fa2", "--json"], "can't contain #", code=2),
    "empty-data": Mistake(["chat", "--name", "x", "--data", "", "--json"], "can't be empty", code=2),
    "name-is-not-a-directory-name": Mistake(["chat", "--name", "../x", "--json"], "--data DIR"),
    "negative-connections": Mistake([*CHAT, "--connections", "-1"], "at least 0", code=2),
    "demo-one-peer": Mistake(["demo", "--peers", "1"], "between 2 and", code=2),
    "demo-loss-one": Mistake(["demo", "--loss", "1"], "below 1", code=2),
    "demo-loss-above-one": Mistake(["demo", "--loss", "1.5"], "below 1", code=2),
    "demo-loss-negative": Mistake(["demo", "--loss", "-0.1"], "at least 0", code=2),
    "demo-diagram-nowhere": Mistake(
        ["demo", "--diagram", "{tmp}/no/such/dir/x.svg"], "does not exist", code=2
    ),
    "sim-no-peers": Mistake(["sim", "--peers", "0"], "between 1 and 256, got 0", code=2),
    # (A room holds at most 256 members: more was a traceback from inside the simulator.)
    "sim-too-many-peers": Mistake(["sim", "--peers", "1000"], "between 1 and 256, got 1000", code=2),
    "bench-zero-rate": Mistake(["bench", "--rate", "0"], "above 0", code=2),
    "bench-in-step-unpaced": Mistake(["bench", "--in-step"], "give --rate as well"),
    "private-with-join": Mistake(
        [*CHAT, "--data", "{tmp}/a", "--private", "--join", "ws://127.0.0.1:1"], "not with --join"
    ),
    "private-with-room": Mistake(
        [*CHAT, "--data", "{tmp}/a", "--private", "--room", "ab"], "not with --room"
    ),
    "log-missing": Mistake(["log", "--data", "{tmp}/nobody"], "no p2pchat data"),
    "log-unknown-name": Mistake(["log", "--name", "nobody"], "no p2pchat data"),
    "log-needs-a-peer": Mistake(["log"], "--data", code=2),
}


@pytest.mark.parametrize("case", MISTAKES.values(), ids=MISTAKES.keys())
def test_a_mistake_is_one_or_two_clear_lines_and_a_nonzero_exit(tmp_path: Path, case: Mistake) -> None:
    case.setup(tmp_path)
    prefix = list(case.wrap)
    if case.read_only:
        prefix += read_only(tmp_path / case.read_only)
    skip_unless_it_works(prefix)
    with port_in_use() as port:
        args = [arg.replace("{tmp}", str(tmp_path)).replace("{port}", str(port)) for arg in case.args]
        done = subprocess.run(
            [*prefix, *command(*args)], stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=TIMEOUT, env=environment(tmp_path), check=False,
        )  # fmt: skip
    assert done.returncode == case.code, done.stderr
    assert "Traceback" not in done.stderr
    if "--private" in case.args:
        assert not (tmp_path / "a").exists()  # (refused before anything is written)
    assert case.message in done.stderr
    if case.code == 1:
        # What is wrong and what to do: at most two lines, naming the command.
        assert done.stderr.startswith("p2pchat ")
        assert len(done.stderr.strip().splitlines()) <= 2, done.stderr


def test_a_second_instance_on_one_data_directory_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "alice"
    first = subprocess.Popen(
        command("chat", "--name", "alice", "--data", data, "--json"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=environment(tmp_path),
    )  # fmt: skip
    try:
        assert first.stdout is not None
        ready = json.loads(first.stdout.readline())
        assert ready["event"] == "ready"
        second = run(tmp_path, "chat", "--name", "alice", "--data", data, "--json")
        assert second.returncode == 1
        assert f"this data directory is in use by process {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        # The default data directory (--name alone) is protected the same way.
        third = run(tmp_path, "chat", "--name", "alice", "--json", "--data", data)
        assert third.returncode == 1
    finally:
        first.terminate()
        first.communicate(timeout=TIMEOUT)
    assert first.returncode == 0
    # Once the first has gone, the directory is free again (the lock dies with its process).
    again = subprocess.Popen(
        command("chat", "--name", "alice", "--data", data, "--json"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=environment(tmp_path),
    )  # fmt: skip
    try:
        assert again.stdout is not None
        assert json.loads(again.stdout.readline())["event"] == "ready"
    finally:
        again.kill()
        again.communicate(timeout=TIMEOUT)


def test_dial_failures_are_reported_as_json_events_and_logged_with_verbose(tmp_path: Path) -> None:
    with port_in_use() as port:
        pass  # a port that was free a moment ago: nothing listens there now
    url = f"ws://127.0.0.1:{port}"
    proc = subprocess.Popen(
        command("-v", "chat", "--name", "x", "--data", tmp_path / "x", "--json", "--join", url),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=environment(tmp_path),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        events: list[dict[str, object]] = []
        while not any(e["event"] == "dial_failed" for e in events) and len(events) < 50:
            events.append(json.loads(proc.stdout.readline()))
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=TIMEOUT)
    failures: list[Any] = [e for e in events if e["event"] == "dial_failed"]
    assert failures, events
    assert failures[0]["url"] == url
    assert failures[0]["reason"] == "connection refused"
    assert isinstance(failures[0]["retry_in"], int | float) and failures[0]["retry_in"] >= 0
    assert f"can't reach {url}: connection refused; retrying in" in stderr


def test_wildcard_listen_advertises_a_real_address(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        command("chat", "--name", "x", "--data", tmp_path / "x", "--json", "--listen", "0.0.0.0:0"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=environment(tmp_path),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.communicate(timeout=TIMEOUT)
    assert ready["url"].startswith("ws://") and "0.0.0.0" not in ready["url"]
    assert ready["url"].endswith(f"/#{ready['peer_id']}")  # it names the peer to expect


# p2pchat log ---------------------------------------------------------------------------------


@pytest.fixture
def stored_log(tmp_path: Path) -> Path:
    """A data directory (the default one of "eve") holding tricky texts."""
    data = tmp_path / "xdg" / "p2pchat" / "eve"
    proc = subprocess.Popen(
        command("chat", "--name", "eve", "--json"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=environment(tmp_path),
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("bell\x07 and \x1b[31mred\x1b[0m\n")
    # Enough lines that `log | head -1` outlives the pipe's buffer.
    proc.stdin.write("".join(f"line {n}\n" for n in range(LOG_LINES)))
    proc.stdin.flush()
    seen = 0
    while seen < 1 + LOG_LINES:
        if json.loads(proc.stdout.readline())["event"] == "message":
            seen += 1
    proc.terminate()
    proc.communicate(timeout=TIMEOUT)
    return data


def test_log_escapes_control_characters_and_json_keeps_them(tmp_path: Path, stored_log: Path) -> None:
    plain = run(tmp_path, "log", "--name", "eve")  # --name finds the default data directory
    assert plain.returncode == 0, plain.stderr
    assert "\x1b" not in plain.stdout and "\x07" not in plain.stdout
    assert "bell\\x07 and \\x1b[31mred\\x1b[0m" in plain.stdout
    exact = run(tmp_path, "log", "--data", stored_log, "--json")
    lines = [json.loads(line) for line in exact.stdout.splitlines()]
    first = next(obj for obj in lines if obj["event"] == "message")  # after the room's entries
    assert first["text"] == "bell\x07 and \x1b[31mred\x1b[0m"


def test_log_indents_the_lines_of_a_multi_line_message() -> None:
    from p2pchat.cli import log_line

    text = log_line(3, 7, "2026-11-27T09:00:00.000Z", "bob", "first\n    0 L1 forged: line\nlast", False)
    first, second, third = text.splitlines()
    assert first.endswith("bob: first")
    column = first.index("bob")
    assert second.startswith(" " * (column + 2)) and third.strip() == "last"


def test_log_into_a_closed_pipe_ends_quietly(tmp_path: Path, stored_log: Path) -> None:
    # `p2pchat log | head -1`: the reader goes away after the first line.
    shell = f"{' '.join(command('log', '--data', stored_log))} | head -1"
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True, timeout=TIMEOUT,
        env=environment(tmp_path), check=False,
    )  # fmt: skip
    assert len(done.stdout.splitlines()) == 1
    assert done.stderr == "", done.stderr


# Help ---------------------------------------------------------------------------------------


def test_bare_command_prints_the_help(tmp_path: Path) -> None:
    done = run(tmp_path)
    assert done.returncode == 0
    for subcommand in ("demo", "chat", "log", "sim", "bench"):
        assert subcommand in done.stdout
    assert "examples:" in done.stdout


@pytest.mark.parametrize("subcommand", ["demo", "chat", "log", "sim", "bench"])
def test_every_subcommand_help_has_a_description_defaults_and_an_example(
    tmp_path: Path, subcommand: str
) -> None:
    done = run(tmp_path, subcommand, "--help")
    assert done.returncode == 0
    _usage, description, *_ = done.stdout.split("\n\n")
    assert len(description.split()) >= 5  # a sentence, not just the usage line
    assert "(default:" in done.stdout or subcommand == "log"
    assert f"examples:\n  p2pchat {subcommand}" in done.stdout


def test_chat_help_mentions_slash_commands_and_where_data_lives(tmp_path: Path) -> None:
    text = run(tmp_path, "chat", "--help").stdout
    for command_name in ("/who", "/join", "/nick", "/whois", "/quit", "//text"):
        assert command_name in text
    assert "~/.local/share/p2pchat/NAME" in text


# Examples ------------------------------------------------------------------------------------


def test_walkthrough_script_runs_while_the_readme_ports_are_taken(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parent.parent / "examples" / "walkthrough.sh"
    env = {**environment(tmp_path), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    with socket.socket() as busy:
        try:
            busy.bind(("127.0.0.1", 9001))
            busy.listen()
        except OSError:
            pass  # already taken by someone: the point is made either way
        done = subprocess.run(
            ["bash", str(script)], capture_output=True, text=True, timeout=120, env=env, check=False
        )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    logs = done.stdout.split("--- ")[1:]
    assert len(logs) == 3
    # The chat lines in the same order everywhere (membership entries such as the AWAY
    # each peer writes as it stops need not have reached the others).
    chat_lines = [tuple(line for line in log.splitlines()[1:] if " * " not in line) for log in logs]
    assert len(chat_lines[0]) == 3 and len(set(chat_lines)) == 1


def test_a_line_over_the_size_limit_is_reported_and_the_peer_goes_on(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        command("chat", "--name", "x", "--data", tmp_path / "x", "--json"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=environment(tmp_path),
    )  # fmt: skip
    try:
        assert proc.stdin is not None and proc.stdout is not None
        assert json.loads(proc.stdout.readline())["event"] == "ready"
        proc.stdin.write("y" * 20000 + "\nsmall enough\n")
        proc.stdin.flush()
        events = []
        while not any(e["event"] == "message" and e["text"] == "small enough" for e in events):
            events.append(json.loads(proc.stdout.readline()))  # (room entries come too)
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=TIMEOUT)
    error = next(e for e in events if e["event"] == "error")
    assert "over 16384 bytes" in error["reason"] and error["unsent"] == ["y" * 20000]
    assert any(e["event"] == "message" and e["text"] == "small enough" for e in events)
    assert proc.returncode == 0 and "Traceback" not in stderr


def test_rooms_and_log_read_a_read_only_copy(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    room = found_room_in_store(copy, "archive", ["kept"], used_at_ms=1_000)
    prefix = read_only(copy)
    skip_unless_it_works(prefix)
    for args in (("rooms", "--data", copy), ("log", "--data", copy, "--json")):
        done = subprocess.run(
            [*prefix, *command(*args)], capture_output=True, text=True, timeout=TIMEOUT,
            env=environment(tmp_path), check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert room in done.stdout if args[0] == "rooms" else '"text": "kept"' in done.stdout
