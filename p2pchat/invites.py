"""One-time invites to an invite-only room, sans-IO.

Part of the pure core. A member of an invite-only room (RoomPolicy.INVITE)
issues an invite as a join URL that names it and carries a fresh random
secret (see :func:`p2pchat.address.invite_url`). Whoever presents that secret
in its handshake -- inside the sealed AUTH, and only to the peer the URL names,
so neither an eavesdropper nor a man in the middle sees it -- is admitted by the
issuer, once, before the invite expires. The issuer keeps only a hash of each
secret (its store holds the book), so the book alone lets nobody in.

Invites are per issuer: another member does not know them and refuses them as
unknown. Wall time (``now_ms``) is an argument, as everywhere in the core.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

__all__ = ["INVITE_SECRET_SIZE", "Invite", "InviteBook", "invite_hash"]

INVITE_SECRET_SIZE: Final = 16
DEFAULT_TTL_SECONDS: Final = 24 * 3600
MAX_INVITES: Final = 10_000
"""Invites an issuer keeps at most; the oldest expired or used ones are dropped first."""


def invite_hash(secret: bytes) -> bytes:
    """What the issuer stores of an invite's secret."""
    return hashlib.blake2b(secret, digest_size=32, person=b"p2pchat-invite").digest()


@dataclass(slots=True)
class Invite:
    secret_hash: bytes
    expires_ms: int
    used_by: bytes | None = None


class InviteBook:
    """The invites one peer issued for its room."""

    def __init__(self, invites: list[Invite] | None = None) -> None:
        self._invites: dict[bytes, Invite] = {i.secret_hash: i for i in invites or ()}

    def __len__(self) -> int:
        return len(self._invites)

    def issue(self, secret: bytes, expires_ms: int) -> Invite:
        """Record a new invite (the caller makes ``secret`` fresh and random)."""
        if len(secret) != INVITE_SECRET_SIZE:
            raise ValueError(f"an invite secret is {INVITE_SECRET_SIZE} bytes")
        if len(self._invites) >= MAX_INVITES:
            self._drop_one()
        invite = Invite(invite_hash(secret), expires_ms)
        self._invites[invite.secret_hash] = invite
        return invite

    def check(self, secret: bytes, now_ms: int) -> str | None:
        """Why ``secret`` does not admit anyone now (None: it is valid)."""
        invite = self._invites.get(invite_hash(secret))
        if invite is None:
            return "unknown invite: forged, or issued by another peer or for another room"
        if invite.used_by is not None:
            return "this invite was already used"
        if now_ms >= invite.expires_ms:
            return "this invite has expired"
        return None

    def redeem(self, secret: bytes, by: bytes, now_ms: int) -> Invite | str:
        """Use ``secret`` for ``by``: the invite (now used), or why it cannot be used."""
        reason = self.check(secret, now_ms)
        if reason is not None:
            return reason
        invite = self._invites[invite_hash(secret)]
        invite.used_by = by
        return invite

    def _drop_one(self) -> None:
        spent = [i for i in self._invites.values() if i.used_by is not None]
        victim = min(spent or self._invites.values(), key=lambda i: i.expires_ms)
        del self._invites[victim.secret_hash]
