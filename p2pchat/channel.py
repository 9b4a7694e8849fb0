"""The encrypted channel of one link: key exchange and sealed frames, sans-IO.

Part of the pure core; all cryptography is libsodium's, through PyNaCl.

* **Key exchange.** Each side of a link makes a fresh X25519 key pair for this
  link only (:class:`EphemeralKey`, from a seed the caller supplies) and sends
  the public half in its HELLO. Both then derive two session keys with
  libsodium's ``crypto_kx`` (the dialer is the kx *client*, the acceptor the
  *server*): one key per direction. The ephemeral secret keys are never stored
  and are dropped once the keys are derived, so a later theft of a peer's
  identity key or disk does not reveal recorded sessions (forward secrecy).
  The exchange itself is unauthenticated; :mod:`p2pchat.protocol` binds it to
  both identities by having each side sign the transcript (both HELLOs, which
  hold both ids, nonces and ephemeral keys) inside the first sealed frame.
* **Sealed frames.** Each direction is one ``crypto_secretstream_xchacha20poly1305``
  stream: the sender's first sealed frame starts with the stream header, and
  every frame is one stream message. The stream's internal counter makes every
  frame depend on all the frames before it: a replayed, reordered, dropped,
  truncated or altered frame fails to open, and the link must be closed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from nacl import bindings
from nacl.exceptions import CryptoError

__all__ = [
    "EPHEMERAL_KEY_SIZE",
    "EPHEMERAL_SEED_SIZE",
    "SEAL_OVERHEAD",
    "EphemeralKey",
    "OpenError",
    "SecureChannel",
]

EPHEMERAL_KEY_SIZE: Final = bindings.crypto_kx_PUBLIC_KEY_BYTES
EPHEMERAL_SEED_SIZE: Final = bindings.crypto_kx_SEED_BYTES
HEADER_SIZE: Final = bindings.crypto_secretstream_xchacha20poly1305_HEADERBYTES
SEAL_OVERHEAD: Final = bindings.crypto_secretstream_xchacha20poly1305_ABYTES
"""Bytes a sealed frame adds to its plaintext (the first one also carries the header)."""
_TAG_MESSAGE: Final = bindings.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE


class OpenError(Exception):
    """A sealed frame did not open: tampered, replayed, reordered or cut short."""


@dataclass(slots=True)
class EphemeralKey:
    """An X25519 key pair used for one link's key exchange only."""

    public: bytes
    _secret: bytes | None = field(repr=False)

    @classmethod
    def from_seed(cls, seed: bytes) -> EphemeralKey:
        """The key pair of ``seed`` (fresh randomness from the caller, 32 bytes)."""
        if len(seed) != EPHEMERAL_SEED_SIZE:
            raise ValueError(f"an ephemeral key seed is {EPHEMERAL_SEED_SIZE} bytes")
        public, secret = bindings.crypto_kx_seed_keypair(seed)
        return cls(public, secret)

    def agree(self, their_public: bytes, *, dialer: bool) -> SecureChannel:
        """Derive the channel with the other side's ephemeral public key, then forget
        our secret key. Raises OpenError if the exchange fails (a degenerate key)."""
        secret = self._secret
        if secret is None:
            raise RuntimeError("this ephemeral key was already used")
        self._secret = None
        derive = bindings.crypto_kx_client_session_keys if dialer else bindings.crypto_kx_server_session_keys
        try:
            receive_key, send_key = derive(self.public, secret, their_public)
        except (CryptoError, ValueError, TypeError) as exc:
            raise OpenError(f"key exchange failed: {exc}") from None
        return SecureChannel(send_key, receive_key)


class SecureChannel:
    """Two secretstreams: one to seal what we send, one to open what we receive."""

    def __init__(self, send_key: bytes, receive_key: bytes) -> None:
        self._send_key: bytes | None = send_key
        self._receive_key: bytes | None = receive_key
        self._push = bindings.crypto_secretstream_xchacha20poly1305_state()
        self._pull = bindings.crypto_secretstream_xchacha20poly1305_state()
        self.sealed = 0
        self.opened = 0

    def seal(self, plaintext: bytes) -> bytes:
        """The next frame we send, sealed (the first one carries the stream header)."""
        header = b""
        if self._send_key is not None:
            header = bindings.crypto_secretstream_xchacha20poly1305_init_push(self._push, self._send_key)
            self._send_key = None
        self.sealed += 1
        return header + bindings.crypto_secretstream_xchacha20poly1305_push(
            self._push, plaintext, None, _TAG_MESSAGE
        )

    def open(self, sealed: bytes) -> bytes:
        """The plaintext of the next frame received. Raises OpenError."""
        if self._receive_key is not None:
            if len(sealed) < HEADER_SIZE + SEAL_OVERHEAD:
                raise OpenError(f"sealed frame 1 does not open: only {len(sealed)} bytes")
            header, sealed = sealed[:HEADER_SIZE], sealed[HEADER_SIZE:]
            bindings.crypto_secretstream_xchacha20poly1305_init_pull(self._pull, header, self._receive_key)
            self._receive_key = None
        if len(sealed) < SEAL_OVERHEAD:
            raise OpenError(f"sealed frame {self.opened + 1} does not open: only {len(sealed)} bytes")
        try:
            plaintext, tag = bindings.crypto_secretstream_xchacha20poly1305_pull(self._pull, sealed, None)
        except (CryptoError, ValueError, TypeError):
            raise OpenError(
                f"sealed frame {self.opened + 1} does not open: replayed, reordered, altered or not encrypted"
            ) from None
        if tag != _TAG_MESSAGE:
            raise OpenError(f"sealed frame {self.opened + 1} has an unexpected stream tag {tag}")
        self.opened += 1
        return bytes(plaintext)
