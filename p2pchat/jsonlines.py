"""The JSON-lines contract of ``p2pchat chat --json`` and ``p2pchat log --json``.

Tools outside this repository parse these objects, so their keys are a stable
interface: add keys if needed, never rename or remove one.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from .evidence import offenders
from .log import ClockLie, Equivocation, OrderedLog
from .message import EntryKind, Message, MessageId
from .notices import membership_notice, reopened
from .peer import (
    ClockLieFound,
    ConcurrentMarked,
    DialFailed,
    EntriesVoided,
    EquivocationFound,
    MembersChanged,
    MessageDelivered,
    NeighbourDown,
    NeighbourUp,
    Peer,
    PeerEvent,
    StableAdvanced,
)

__all__ = [
    "dumps",
    "iso_time",
    "logged_message_object",
    "message_object",
    "peer_event_object",
    "proof_event",
    "proof_objects",
    "ready_object",
    "statistics_object",
    "status_object",
]


def iso_time(ms: int) -> str:
    """Milliseconds since the epoch as ISO 8601 UTC, e.g. ``2026-11-26T20:17:06.123Z``."""
    seconds, millis = divmod(ms, 1000)
    return f"{_iso_second(seconds)}.{millis:03d}Z"


@lru_cache(maxsize=256)
def _iso_second(seconds: int) -> str:
    # Messages of a burst share their second: format it once.
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def message_object(message: Message, *, index: int, concurrent: bool, stable: bool) -> dict[str, Any]:
    return {
        "event": "message",
        "sender": message.sender_id.hex(),
        "name": message.name,
        "seq": message.seq,
        "lamport": message.lamport,
        "text": message.text,
        "sent_at": iso_time(message.sent_at_ms),
        "index": index,
        "concurrent": concurrent,
        "stable": stable,
        # What the author had seen that its previous message had not (vector-clock
        # entries, sender -> seq). Lets a UI trace the causal past and tell which lines
        # were concurrent with which.
        "deps": {s.hex(): q for s, q in message.deps.items()},
    }


_ACTIONS = {
    EntryKind.GENESIS: "joined",
    EntryKind.CHANGE: "proposed",
    EntryKind.FLUSH: "flushed",
    EntryKind.COMMIT: "committed",
    EntryKind.LEAVE: "left",
    EntryKind.AWAY: "away",
}


def member_object(message: Message, *, index: int, stable: bool) -> dict[str, Any]:
    """A membership entry: the founder's genesis ("joined"), a change proposed, a FLUSH
    answering one, a COMMIT of one, a member that left or went away. Who joined, came back or was removed
    by a change is said when it is decided (a ``members`` event, and ``decided`` on the
    entry that completed it, see entry_object)."""
    obj: dict[str, Any] = {
        "event": "member",
        "action": _ACTIONS[message.kind],
        "peer_id": message.sender_id.hex(),
        "name": message.name,
        "by": None if message.kind is EntryKind.GENESIS else message.sender_id.hex(),
        "sender": message.sender_id.hex(),
        "seq": message.seq,
        "lamport": message.lamport,
        "sent_at": iso_time(message.sent_at_ms),
        "index": index,
        "stable": stable,
    }
    if message.kind is EntryKind.GENESIS:
        obj["room"] = message.room_id().hex()
        obj["room_name"] = message.text
    elif message.change is not None:
        obj["epoch"] = message.change.epoch
        obj["admit"] = [{"peer_id": m.hex(), "name": n} for m, n in message.change.admitted]
        obj["remove"] = [m.hex() for m in message.change.removed]
    elif message.flush is not None:
        obj["epoch"] = message.flush.epoch
        obj["change"] = {"sender": message.flush.change.sender_id.hex(), "seq": message.flush.change.seq}
    elif message.text:
        obj["reason"] = message.text
    return obj


def members_changed_object(event: MembersChanged, log: OrderedLog) -> dict[str, Any]:
    """A membership change decided: who joined (or came back), who was removed."""
    roster = log.roster
    return {
        "event": "members",
        "epoch": event.epoch,
        "joined": [{"peer_id": m.hex(), "name": roster.name_of(m) or n} for m, n in event.joined],
        "removed": [{"peer_id": m.hex(), "name": roster.name_of(m) or ""} for m in event.removed],
        "by": event.by.hex(),
        # A room every member had quit, reopened by those back ("removed": those still away).
        "reopened": reopened(log, event.epoch),
    }


def entry_object(
    log: OrderedLog, message: Message, *, index: int, concurrent: bool, stable: bool
) -> dict[str, Any]:
    """A ``message`` event for a chat line, a ``member`` event for a membership entry."""
    if message.is_text:
        obj = message_object(message, index=index, concurrent=concurrent, stable=stable)
    else:
        obj = _membership_object(log, message, index=index, stable=stable)
    if message.sender_id in offenders(log.proofs):
        # (Only then: its author is proven to have lied, and other peers may show another
        # version of this entry, or none; see evidence.offenders.)
        obj["disputed"] = True
    return obj


def _membership_object(log: OrderedLog, message: Message, *, index: int, stable: bool) -> dict[str, Any]:
    """A ``member`` event, with the notice the chat shows and the decision it completes."""
    obj = member_object(message, index=index, stable=stable)
    obj["notice"] = membership_notice(log, message)
    decision = log.roster.decided_at(message.key)
    if decision is not None:
        roster = log.roster
        obj["decided"] = {
            "joined": [{"peer_id": m.hex(), "name": roster.name_of(m) or n} for m, n in decision.admitted],
            "removed": [{"peer_id": m.hex(), "name": roster.name_of(m) or ""} for m in decision.removed],
        }
    return obj


def logged_message_object(log: OrderedLog, index: int) -> dict[str, Any]:
    """The entry at ``index`` of ``log``, with its flags as the log has them now."""
    message = log[index]
    return entry_object(
        log, message, index=index, concurrent=log.is_concurrent(message.id), stable=index < log.stable_count
    )


def proof_objects(log: OrderedLog) -> list[dict[str, Any]]:
    """The proofs against members ``log`` holds (a log restored from a store holds the
    stored ones): ``equivocation`` and ``clock_lie`` events, as ``chat --json`` prints
    them when they are found."""
    events: list[PeerEvent] = [proof_event(proof) for proof in log.proofs]
    return [peer_event_object(event, log) for event in events]


def proof_event(proof: Equivocation | ClockLie) -> EquivocationFound | ClockLieFound:
    """The peer event that reports ``proof``."""
    if isinstance(proof, Equivocation):
        return EquivocationFound(proof.kept, proof.rejected)
    promise = proof.announcement
    return ClockLieFound(promise.clock_seq, promise.clock_lamport, proof.message)


def peer_event_object(event: PeerEvent, log: OrderedLog) -> dict[str, Any]:
    match event:
        case MessageDelivered():
            return entry_object(
                log, event.message, index=event.index, concurrent=event.concurrent, stable=event.stable
            )
        case StableAdvanced():
            return {"event": "stable", "count": event.count}
        case ConcurrentMarked():
            ids = [{"sender": sender.hex(), "seq": seq} for sender, seq in event.ids]
            return {"event": "concurrent", "messages": ids}
        case NeighbourUp():
            return {
                "event": "peer_up",
                "peer_id": event.sender_id.hex(),
                "name": event.name,
                "url": event.url,
            }
        case NeighbourDown():
            peer_id = event.sender_id.hex() if event.sender_id else None
            return {"event": "peer_down", "peer_id": peer_id, "reason": event.reason}
        case EquivocationFound():
            kept, rejected = event.kept, event.rejected
            return {
                "event": "equivocation",
                "sender": kept.sender_id.hex(),
                "name": kept.name,
                "seq": kept.seq,
                "kept": kept.text,
                "rejected": rejected.text,
            }
        case ClockLieFound():
            message = event.message
            return {
                "event": "clock_lie",
                "sender": message.sender_id.hex(),
                "name": message.name,
                "announced_seq": event.announced_seq,
                "announced_clock": event.announced_clock,
                "seq": message.seq,
                "lamport": message.lamport,
                # False where the promise was relied on: the entry is held without a place.
                "shown": log.is_visible(message),
            }
        case DialFailed():
            # retry_in: seconds until the next try, or null once the address is given up.
            retry = None if event.retry_in is None else round(event.retry_in, 1)
            return {"event": "dial_failed", "url": event.url, "reason": event.reason, "retry_in": retry}
        case MembersChanged():
            return members_changed_object(event, log)
        case EntriesVoided():
            voided = [{"sender": m.sender_id.hex(), "seq": m.seq} for m in event.messages]
            return {"event": "voided", "messages": voided}


def ready_object(peer: Peer) -> dict[str, Any]:
    """The first object: who and where this peer is (``url`` is the address to ``--join``)."""
    room = peer.room_id.hex() if peer.room_id is not None else None
    return {"event": "ready", "url": peer.url, "peer_id": peer.peer_id, "name": peer.name, "room": room}


def status_object(peer: Peer) -> dict[str, Any]:
    """The room as this peer sees it now: members, who stability waits for, counters.

    ``waiting_on`` lists the members whose silence holds the stable prefix back
    (empty when all are equally up to date). The web page's socket sends it when
    it changes; ``chat --json`` does not print it.
    """
    log = peer.log
    holding = set(log.silent_members())
    members = []
    for member, info in sorted(log.member_info().items()):
        seq = log.delivered_seq(member)
        last = log.get(MessageId(member, seq)) if seq else None
        members.append(
            {
                "peer_id": member.hex(),
                "name": info.name or (last.name if last else None),
                "state": info.state.value,
                "messages": seq,
                "last_sent_at": iso_time(last.sent_at_ms) if last else None,
                "holding_stability": member in holding,
            }
        )
    neighbours = [
        {"peer_id": sender.hex() if sender else None, "url": url} for _, sender, url in peer.node.neighbours()
    ]
    return {
        "event": "status",
        "members": members,
        "waiting_on": sorted(m.hex() for m in holding),
        "neighbours": neighbours,
        "count": len(log),
        "stable": log.stable_count,
        "held": log.held_count,
    }


def statistics_object(peer: Peer) -> dict[str, Any]:
    """The peer's counters (frames, bytes, held, ...), printed when it stops."""
    stats = peer.statistics()
    return {"event": "statistics", **asdict(stats.node), "members": stats.members}


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
"""One encoder for every line: json.dumps with options builds a new one each call."""


def dumps(obj: dict[str, Any]) -> str:
    return _ENCODER.encode(obj)
