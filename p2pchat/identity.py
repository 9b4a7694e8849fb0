"""Ed25519 identities: who a peer is, and checking who signed what.

Part of the pure core. A peer's ``sender_id`` *is* its 32-byte Ed25519 public
key (DESIGN.md rule 1): unique, self-certifying and impossible to claim without
the private key. Messages therefore verify without any directory lookup.

Public keys of small order (or not on the main subgroup) are refused: with such
a key a forger can make one signature verify for many messages.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from functools import lru_cache

import nacl.bindings
import nacl.exceptions
import nacl.signing

__all__ = [
    "SENDER_ID_SIZE",
    "SIGNATURE_SIZE",
    "Identity",
    "InvalidPublicKey",
    "check_sender_id",
    "preverify",
    "remember_verifications",
    "short_id",
    "verify_signature",
]

SENDER_ID_SIZE = 32
SIGNATURE_SIZE = 64
SEED_SIZE = 32


class InvalidPublicKey(ValueError):
    """A byte string that is not an acceptable Ed25519 public key."""


@lru_cache(maxsize=4096)
def check_sender_id(sender_id: bytes) -> bytes:
    """Return ``sender_id`` if it is a usable public key, else raise InvalidPublicKey.

    The curve check costs ~50 µs, so results are cached: a room has few members.
    """
    if len(sender_id) != SENDER_ID_SIZE:
        raise InvalidPublicKey(f"sender id must be {SENDER_ID_SIZE} bytes, got {len(sender_id)}")
    if not nacl.bindings.crypto_core_ed25519_is_valid_point(sender_id):
        raise InvalidPublicKey("public key is of small order or not a valid curve point")
    return sender_id


_PREVERIFIED_LIMIT = 1 << 16
_preverified: dict[bytes, tuple[bytes, bytes]] = {}
"""signature -> (sender_id, payload) of signatures already found valid by :func:`preverify`."""


def preverify(items: Iterable[tuple[bytes, bytes, bytes]]) -> None:
    """Check ``(sender_id, payload, signature)`` triples ahead of time.

    Meant for a worker thread (libsodium runs without the GIL), so that a second core
    verifies the next batch while the first processes this one. Only valid triples
    are remembered, and each answer is used once, so this can never make a bad
    signature pass: it only moves the work.
    """
    for sender_id, payload, signature in items:
        if len(_preverified) >= _PREVERIFIED_LIMIT:
            return
        if _verify_now(sender_id, payload, signature):
            _preverified[signature] = (sender_id, payload)


_VERIFIED_LIMIT = 1 << 16
_verified: OrderedDict[bytes, bytes] | None = None
"""signature -> digest of (sender_id, payload) of valid signatures, once
:func:`remember_verifications` has been called; oldest first."""


def remember_verifications() -> None:
    """From now on, remember (bounded) which signatures were found valid, in this process.

    For a process that runs many peers (the simulator): each of them checks every
    message and announcement, the same bytes every time. Remembered is a BLAKE2b-256
    digest of the signer and the signed bytes, so a remembered answer is only reused
    for exactly the same signer, bytes and signature: it can never make a bad
    signature pass, only save the repeated work. A peer process does not need it
    (its log checks each message once).
    """
    global _verified
    if _verified is None:
        _verified = OrderedDict()


def verify_signature(sender_id: bytes, payload: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``sender_id``'s Ed25519 signature over ``payload``."""
    if len(signature) != SIGNATURE_SIZE:
        return False
    known = _preverified.pop(signature, None)
    if known is not None and known[0] == sender_id and known[1] == payload:
        return True
    if _verified is None:
        return _verify_now(sender_id, payload, signature)
    digest = hashlib.blake2b(sender_id + payload, digest_size=32).digest()
    if _verified.get(signature) == digest:
        return True
    if not _verify_now(sender_id, payload, signature):
        return False
    if len(_verified) >= _VERIFIED_LIMIT:
        _verified.popitem(last=False)
    _verified[signature] = digest
    return True


def _verify_now(sender_id: bytes, payload: bytes, signature: bytes) -> bool:
    if len(signature) != SIGNATURE_SIZE:
        return False
    try:
        check_sender_id(sender_id)
        nacl.bindings.crypto_sign_open(signature + payload, sender_id)
    except (InvalidPublicKey, nacl.exceptions.BadSignatureError):
        return False
    return True


def short_id(sender_id: bytes) -> str:
    """A short human-friendly rendering of a sender id (first 8 hex digits)."""
    return sender_id.hex()[:8]


class Identity:
    """A peer's Ed25519 key pair. The private half never leaves this object."""

    __slots__ = ("_secret", "_signing_key", "sender_id")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_SIZE:
            raise ValueError(f"an identity seed is {SEED_SIZE} bytes")
        self._signing_key = nacl.signing.SigningKey(seed)
        self._secret = self._signing_key._signing_key  # seed + public key, for libsodium
        self.sender_id: bytes = bytes(self._signing_key.verify_key)

    @classmethod
    def from_random(cls, random_bytes: bytes) -> Identity:
        """Make an identity from 32 bytes of caller-supplied randomness.

        The core takes randomness as an argument; the shell passes ``os.urandom(32)``.
        """
        return cls(random_bytes)

    @property
    def seed(self) -> bytes:
        """The 32-byte private seed, for storing the identity."""
        return bytes(self._signing_key)

    def sign(self, payload: bytes) -> bytes:
        """The 64-byte detached signature over ``payload``."""
        # The raw binding: SigningKey.sign wraps its result in objects we would discard.
        return nacl.bindings.crypto_sign(payload, self._secret)[:SIGNATURE_SIZE]

    def __repr__(self) -> str:
        return f"Identity({short_id(self.sender_id)})"
