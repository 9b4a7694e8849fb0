"""Commands typed into the line-oriented chats (``chat --json`` and the plain line chat).

A stdin line that starts with ``/`` is a command, not a message: ``/invite``,
``/leave`` and ``/remove NAME``, as in the full-screen chat (a script can leave a
room, or propose a removal, the way a person can). ``//text`` sends ``/text``. An
unknown command is an error, never a message: a mistyped ``/leave`` must not go to
every member as text.

Pure: :mod:`p2pchat.cli` runs what these parse.
"""

from __future__ import annotations

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


def member_called(log: OrderedLog, argument: str) -> bytes:
    """The active member ``argument`` names: by its name (in any case), or by the
    first hex digits of its peer id (at least MIN_ID_PREFIX) when names are shared.

    Raises ValueError saying why no one member is named."""
    if not argument:
        raise ValueError("whom? give a member's name or the start of its peer id")
    info = log.member_info()
    wanted = argument.casefold()
    found = [member for member in log.members if member in info and info[member].name.casefold() == wanted]
    if not found and len(argument) >= MIN_ID_PREFIX:
        found = [member for member in log.members if member.hex().startswith(wanted)]
    if len(found) == 1:
        return found[0]
    if found:
        raise ValueError(f"more than one member is called {argument}: give the start of its peer id")
    raise ValueError(f"no active member is called {argument}")
