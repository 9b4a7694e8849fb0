"""Join URLs that name the peer to expect: ``ws://HOST:PORT/#<peer id in hex>``.

Part of the pure core. The fragment is never sent to the server (it is not part
of the WebSocket request); the dialer keeps it and refuses the link if the peer
that answers proves another identity (see :class:`p2pchat.protocol.Link`). A URL
without a fragment still works: the dialer then trusts whoever answers (trust on
first use).
"""

from __future__ import annotations

from .identity import SENDER_ID_SIZE

__all__ = ["peer_url", "split_peer_url", "with_peer_id"]


def peer_url(base: str, sender_id: bytes) -> str:
    """The join URL of the peer ``sender_id`` listening at ``base`` (``ws://host:port``)."""
    return f"{base.rstrip('/')}/#{sender_id.hex()}"


def split_peer_url(url: str) -> tuple[str, bytes | None]:
    """``(url without the fragment, expected peer id or None)``. Raises ValueError when
    the fragment is not a peer id (64 hex digits)."""
    base, sep, fragment = url.partition("#")
    if not sep:
        return url, None
    try:
        expected = bytes.fromhex(fragment)
    except ValueError:
        expected = b""
    if len(expected) != SENDER_ID_SIZE:
        raise ValueError(f"the part after '#' must be a peer id of {2 * SENDER_ID_SIZE} hex digits: {url!r}")
    return base, expected


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
