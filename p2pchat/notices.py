"""What the conversation says about membership entries, in words.

Shared by the terminal chats and the log printer: a membership entry of the log
(genesis, change, flush, leave, away) becomes a notice line in its place, and the
entry that decides a change (the COMMIT that makes a majority) also says who joined, came back or
was removed. A FLUSH or COMMIT that completes nothing says nothing: it is bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable

from .log import OrderedLog
from .membership import Decision
from .message import EntryKind, Message

__all__ = ["Label", "decision_notice", "members_changed_notice", "membership_notice", "reopened"]

Label = Callable[[bytes, str], str]
"""How a member is named in a notice, from its id and its name (a chat that tells two
people of one name apart passes its own, see ChatScreen.shown_names)."""


def _as_named(member: bytes, name: str) -> str:
    return name


def membership_notice(
    log: OrderedLog, message: Message, *, with_decision: bool = True, label: Label = _as_named
) -> str:
    """The notice for a membership entry of ``log`` ("" for one that says nothing).

    ``with_decision``: the entry that completes a change also says what it decided (a
    view drawn from the log); a stream of events says that when it happens instead.
    """
    name = label(message.sender_id, message.name)
    decision = log.roster.decided_at(message.key) if with_decision else None
    parts: list[str] = []
    if message.kind is EntryKind.GENESIS:
        parts.append(f"{name} founded the room {message.text!r}")
    elif message.change is not None and log.roster.decided_at(message.key) is None:
        change = message.change
        proposals = []
        if change.admitted:
            proposals.append("to admit " + ", ".join(label(m, n) for m, n in change.admitted))
        if change.removed:
            proposals.append("to remove " + ", ".join(label(m, _name(log, m)) for m in change.removed))
        parts.append(f"{name} proposes " + " and ".join(proposals))
    elif message.kind is EntryKind.LEAVE:
        parts.append(f"{name} left" + (f" ({message.text})" if message.text else ""))
    elif message.kind is EntryKind.AWAY:
        parts.append(f"{name} is away")
    if decision is not None:
        parts.append(decision_notice(log, decision, label))
    return " · ".join(p for p in parts if p)


def decision_notice(log: OrderedLog, decision: Decision, label: Label = _as_named) -> str:
    """ "bob joined, carol is back, dave was removed" for a decided change."""
    return members_changed_notice(log, decision.removed, decision.admitted, decision, label)


def members_changed_notice(
    log: OrderedLog,
    removed: tuple[bytes, ...],
    admitted: tuple[tuple[bytes, str], ...],
    decision: Decision | None = None,
    label: Label = _as_named,
) -> str:
    roster = log.roster
    closed = [e for e in roster.epochs if e.decision is not None]
    epoch = next((e.number for e in closed if e.decision is decision), closed[-1].number if closed else 0)
    words = []
    for member, name in admitted:
        before = any(member in e.members for e in roster.epochs[: epoch + 1])
        words.append(f"{label(member, roster.name_of(member) or name)} {'is back' if before else 'joined'}")
    # (Members a reopening of a room everyone had quit left out are away, not gone.)
    gone = "is still away" if reopened(log, epoch) else "was removed"
    words += [f"{label(member, _name(log, member))} {gone}" for member in removed]
    return ", ".join(words)


def reopened(log: OrderedLog, epoch: int) -> bool:
    """Whether epoch ``epoch`` was closed by a reopening (see p2pchat.membership)."""
    closed = log.roster.epochs[epoch] if epoch < len(log.roster.epochs) else None
    decision = closed.decision if closed is not None else None
    return decision is not None and closed is not None and closed.proposals[decision.change].reopen


def _name(log: OrderedLog, member: bytes) -> str:
    return log.roster.name_of(member) or member.hex()[:8]
