"""What the conversation says about membership entries, in words.

Shared by the terminal chats and the log printer: a membership entry of the log
(genesis, change, flush, leave, away) becomes a notice line in its place, and the
entry that decides a change (the COMMIT that makes a majority) also says who joined, came back or
was removed. A FLUSH or COMMIT that completes nothing says nothing: it is bookkeeping.
"""

from __future__ import annotations

from .log import OrderedLog
from .membership import Decision
from .message import EntryKind, Message

__all__ = ["decision_notice", "members_changed_notice", "membership_notice"]


def membership_notice(log: OrderedLog, message: Message, *, with_decision: bool = True) -> str:
    """The notice for a membership entry of ``log`` ("" for one that says nothing).

    ``with_decision``: the entry that completes a change also says what it decided (a
    view drawn from the log); a stream of events says that when it happens instead.
    """
    name = message.name
    decision = log.roster.decided_at(message.key) if with_decision else None
    parts: list[str] = []
    if message.kind is EntryKind.GENESIS:
        parts.append(f"{name} founded the room {message.text!r}")
    elif message.change is not None and log.roster.decided_at(message.key) is None:
        change = message.change
        proposals = []
        if change.admitted:
            proposals.append("to admit " + ", ".join(n for _, n in change.admitted))
        if change.removed:
            proposals.append("to remove " + ", ".join(_name(log, m) for m in change.removed))
        parts.append(f"{name} proposes " + " and ".join(proposals))
    elif message.kind is EntryKind.LEAVE:
        parts.append(f"{name} left" + (f" ({message.text})" if message.text else ""))
    elif message.kind is EntryKind.AWAY:
        parts.append(f"{name} is away")
    if decision is not None:
        parts.append(decision_notice(log, decision))
    return " · ".join(p for p in parts if p)


def decision_notice(log: OrderedLog, decision: Decision) -> str:
    """ "bob joined, carol is back, dave was removed" for a decided change."""
    return members_changed_notice(log, decision.removed, decision.admitted, decision)


def members_changed_notice(
    log: OrderedLog,
    removed: tuple[bytes, ...],
    admitted: tuple[tuple[bytes, str], ...],
    decision: Decision | None = None,
) -> str:
    roster = log.roster
    closed = [e for e in roster.epochs if e.decision is not None]
    epoch = next((e.number for e in closed if e.decision is decision), closed[-1].number if closed else 0)
    words = []
    for member, name in admitted:
        before = any(member in e.members for e in roster.epochs[: epoch + 1])
        words.append(f"{roster.name_of(member) or name} {'is back' if before else 'joined'}")
    words += [f"{_name(log, member)} was removed" for member in removed]
    return ", ".join(words)


def _name(log: OrderedLog, member: bytes) -> str:
    return log.roster.name_of(member) or member.hex()[:8]
