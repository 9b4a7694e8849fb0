"""Join URLs that name the peer to expect: ``ws://HOST:PORT/#<peer id in hex>``,
and invite URLs that also carry a one-time secret: ``ws://HOST:PORT/#<peer id>.<secret>``.

Part of the pure core. The fragment is never sent to the server (it is not part
of the WebSocket request); the dialer keeps it and refuses the link if the peer
that answers proves another identity (see :class:`p2pchat.protocol.Link`). A URL
without a fragment still works: the dialer then trusts whoever answers (trust on
first use). An invite secret travels only inside the sealed handshake, and only to
the peer the URL names (see :mod:`p2pchat.invites`).
"""

from __future__ import annotations

from .identity import SENDER_ID_SIZE
from .invites import INVITE_SECRET_SIZE

__all__ = ["address_of", "invite_of", "invite_url", "peer_url", "split_peer_url", "with_peer_id"]


def peer_url(base: str, sender_id: bytes) -> str:
    """The join URL of the peer ``sender_id`` listening at ``base`` (``ws://host:port``)."""
    return f"{base.rstrip('/')}/#{sender_id.hex()}"


def invite_url(base: str, sender_id: bytes, secret: bytes) -> str:
    """The join URL of an invite issued by ``sender_id``."""
    return f"{peer_url(base, sender_id)}.{secret.hex()}"


def split_peer_url(url: str) -> tuple[str, bytes | None]:
    """``(url without the fragment, expected peer id or None)``. Raises ValueError when
    the fragment is not a peer id (64 hex digits), optionally with an invite."""
    base, expected, _ = _parse(url)
    return base, expected


def invite_of(url: str) -> bytes | None:
    """The invite secret an invite URL carries (None for a plain join URL)."""
    return _parse(url)[2]


def _parse(url: str) -> tuple[str, bytes | None, bytes | None]:
    base, sep, fragment = url.partition("#")
    if not sep:
        return url, None, None
    peer_hex, dot, secret_hex = fragment.partition(".")
    expected, secret = _hex(peer_hex), _hex(secret_hex)
    if len(expected) != SENDER_ID_SIZE:
        raise ValueError(f"the part after '#' must be a peer id of {2 * SENDER_ID_SIZE} hex digits: {url!r}")
    if dot and len(secret) != INVITE_SECRET_SIZE:
        raise ValueError(f"an invite is {2 * INVITE_SECRET_SIZE} hex digits after the peer id: {url!r}")
    return base, expected, secret if dot else None


def _hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""


def with_peer_id(url: str, sender_id: bytes) -> str | None:
    """``url`` naming ``sender_id``: a URL that names no id gets it; one that names
    another id (a false announcement) gives None."""
    try:
        base, expected = split_peer_url(url)
    except ValueError:
        return None
    if expected is not None and expected != sender_id:
        return None
    return peer_url(base, sender_id)


def address_of(url: str) -> str:
    """Where ``url`` points, without the peer id or invite: two URLs of the same peer
    (a plain one, one naming its id, an invite) have the same address."""
    return url.partition("#")[0].rstrip("/")
