"""Commands typed into the line-oriented chats (``chat --json`` and the plain line chat).

A stdin line that starts with ``/`` is a command, not a message: ``/invite``,
``/leave`` and ``/remove NAME``, as in the full-screen chat (a script can leave a
room, or propose a removal, the way a person can). ``//text`` sends ``/text``. An
unknown command is an error, never a message: a mistyped ``/leave`` must not go to
every member as text.

Pure: :mod:`p2pchat.cli` and the web page run what these parse; the full-screen
chat, which has more commands, finds the member a ``/remove`` names here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .log import OrderedLog

__all__ = ["COMMANDS", "Command", "member_called", "parse_line"]

COMMANDS = ("invite", "leave", "remove")

MIN_ID_PREFIX = 4
"""Hex digits of a peer id that may name a member in ``/remove`` (it must be unambiguous)."""


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    """One of COMMANDS."""
    argument: str = ""


def parse_line(text: str) -> str | Command:
    """The text a stdin line sends, or the command it is.

    Raises ValueError for a line that names no command (its message says how to send
    it as text)."""
    if not text.startswith("/"):
        return text
    if text.startswith("//"):
        return text[1:]
    name, _, argument = text[1:].partition(" ")
    if name not in COMMANDS:
        known = ", ".join(f"/{command}" for command in COMMANDS)
        raise ValueError(f"unknown command /{name} (commands: {known}; //{name} sends the line as text)")
    return Command(name, argument.strip())


def member_called(
    log: OrderedLog,
    argument: str,
    *,
    names: Mapping[bytes, str] | None = None,
    labels: Mapping[bytes, str] | None = None,
) -> bytes:
    """The active member ``argument`` names, in any case: as a chat shows it (one of
    ``labels``, such as ``bob#74e7`` where two are called bob), by its name (one of
    ``names``; by default the name the roster gives it), or by the first hex digits of
    its peer id (at least MIN_ID_PREFIX, after an optional ``#``).

    Raises ValueError saying why no one member is named."""
    wanted = argument.strip().casefold()
    if not wanted:
        raise ValueError("whom? give a member's name or the start of its peer id")
    members = log.members
    if names is None:
        info = log.member_info()
        names = {member: info[member].name for member in members if member in info}
    labels = labels or {}
    for matches in (
        lambda member: labels.get(member, "").casefold() == wanted,
        lambda member: names.get(member, "").casefold() == wanted,
        lambda member: _is_id_prefix(wanted) and member.hex().startswith(wanted.removeprefix("#")),
        lambda member: _is_name_and_id_prefix(wanted, names.get(member, ""), member),
    ):
        found = sorted(member for member in members if matches(member))
        if len(found) == 1:
            return found[0]
        if found:
            told_apart = ", ".join(_told_apart(member, names, labels) for member in found)
            called = argument.strip()
            raise ValueError(f"more than one member is called {called} ({told_apart}): name one of those")
    raise ValueError(f"no active member is called {argument.strip()}")


def _told_apart(member: bytes, names: Mapping[bytes, str], labels: Mapping[bytes, str]) -> str:
    return labels.get(member) or f"{names.get(member, '')}#{member.hex()[:8]}"


def _is_id_prefix(text: str) -> bool:
    digits = text.removeprefix("#")
    return len(digits) >= MIN_ID_PREFIX and _is_hex(digits)


def _is_name_and_id_prefix(wanted: str, name: str, member: bytes) -> bool:
    """Whether ``wanted`` reads ``name#digits``, the digits starting ``member``'s id (the
    way the full-screen chat tells two members of one name apart)."""
    wanted_name, mark, digits = wanted.rpartition("#")
    if not (mark and digits and _is_hex(digits)):
        return False
    return wanted_name == name.casefold() and member.hex().startswith(digits)


def _is_hex(text: str) -> bool:
    return all(digit in "0123456789abcdef" for digit in text)
