"""Ordinary mistakes, said in one or two lines instead of a traceback.

A peer that cannot start (the port is taken, the data directory is a file, another
process holds it, ...) fails deep inside trio, often wrapped in exception groups.
:func:`explain` finds the cause and says what is wrong and what to do; the
command prints that and exits non-zero. Anything it does not recognise is a bug,
and keeps its traceback.
"""

from __future__ import annotations

import errno
import socket
import sqlite3
from pathlib import Path

from .addresses import interface_addresses
from .lockfile import DataDirectoryInUse
from .peer import NoSuchRoom
from .store import StoreFormatError

__all__ = ["UserError", "explain"]

WRITABLE = "Give --data a directory you can write (or make this one writable)."


class UserError(Exception):
    """A mistake in how the command was used: the message says what to do."""


def explain(exc: BaseException, *, listen: str | None = None, data_dir: Path | None = None) -> str | None:
    """One or two lines for a known startup failure, or ``None`` for anything else."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (text := explain(inner, listen=listen, data_dir=data_dir)) is not None:
                return text
        return None
    where = f" {data_dir}" if data_dir is not None else ""
    match exc:
        case StoreFormatError() | NoSuchRoom():
            return str(exc)
        case UserError() | DataDirectoryInUse():
            return str(exc) + (
                "\nStop the other one, or give this one its own --data DIR or --name."
                if isinstance(exc, DataDirectoryInUse)
                else ""
            )
        case socket.gaierror():
            return (
                f"can't listen on {listen}: unknown host ({exc.strerror}).\n"
                "Use 127.0.0.1, 0.0.0.0 (every interface) or this machine's address."
            )
        case OSError() if exc.errno == errno.EADDRINUSE:
            return (
                f"can't listen on {listen}: the port is already in use (another p2pchat?).\n"
                "Pick another port, or port 0 (e.g. --listen 127.0.0.1:0) to get a free one."
            )
        case OSError() if exc.errno == errno.EADDRNOTAVAIL:
            return (
                f"can't listen on {listen}: that address is not on this machine.\n"
                f"Use 0.0.0.0 (every interface) or one of: {', '.join(interface_addresses())}."
            )
        case PermissionError() if exc.filename is None and listen is not None:
            return (
                f"can't listen on {listen}: permission denied (ports below 1024 need privileges).\n"
                "Pick a port above 1024, or port 0 to get a free one."
            )
        case FileExistsError() | NotADirectoryError():
            return (
                f"the data directory{where} is a file, or inside one.\n"
                "Give --data a directory (it is created if missing)."
            )
        case PermissionError():
            return f"can't write the data directory{where}: permission denied.\n{WRITABLE}"
        case sqlite3.OperationalError() if "readonly" in str(exc) or "read-only" in str(exc):
            return (
                f"the database in{where} is read-only.\nMake it writable, or give --data another directory."
            )
        case sqlite3.OperationalError() if "unable to open" in str(exc):
            return f"can't open the database in{where}.\nCheck that the directory exists and is writable."
        case sqlite3.DatabaseError():
            return f"the data directory{where} holds something that is not a p2pchat database ({exc})."
        case OSError() if exc.errno in (errno.EROFS, errno.EACCES):
            return f"can't write the data directory{where}: {(exc.strerror or '').lower()}.\n{WRITABLE}"
    return None
