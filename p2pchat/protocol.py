"""One connection's handshake and framing rules, sans-IO.

Part of the pure core. A :class:`Link` turns the bytes of one WebSocket
connection into checked frames and says which frames to answer with; it never
touches a socket. The peer-wide logic (the log, gossip, repair) lives in
:mod:`p2pchat.node`, which owns one Link per connection.

The handshake, symmetric for the dialing and the accepting side::

    -> HELLO (our id, name, listen URL, fresh nonce, our heads)
    <- HELLO
    -> AUTH  signature over (context, their nonce, our nonce, our id)
    <- AUTH
    ... OPEN: any frame but HELLO and AUTH

Each side proves it holds the private key of the id it claims by signing the
other side's fresh nonce, so ids in HELLO cannot be borrowed or replayed.
Anything out of order, undecodable or oversized is a :class:`ProtocolError`
that carries a WebSocket close code and a reason.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .codec import CodecError
from .identity import Identity, short_id, verify_signature
from .wire import (
    MAX_FRAME_BYTES,
    NONCE_SIZE,
    PROTOCOL_VERSION,
    Auth,
    Frame,
    Head,
    Hello,
    decode_frame,
    encode_frame,
)

__all__ = ["CloseCode", "Link", "LinkState", "ProtocolError"]

AUTH_CONTEXT = b"p2pchat-auth-v1"


class CloseCode(enum.IntEnum):
    """WebSocket close codes (RFC 6455 section 7.4.1) used by p2pchat."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    POLICY_VIOLATION = 1008
    TOO_BIG = 1009
    TRY_AGAIN_LATER = 1013


class ProtocolError(Exception):
    """The remote side broke the protocol; the connection must close."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class LinkState(enum.Enum):
    AWAIT_HELLO = "await-hello"
    AWAIT_AUTH = "await-auth"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class RemotePeer:
    """Who is on the other end, once the handshake has proved it."""

    sender_id: bytes
    name: str
    listen_url: str | None
    heads: tuple[Head, ...]
    room_id: bytes = b""


def _auth_payload(challenger_nonce: bytes, prover_nonce: bytes, prover_id: bytes) -> bytes:
    return AUTH_CONTEXT + challenger_nonce + prover_nonce + prover_id


class Link:
    """The handshake and frame checks of one connection.

    ``nonce`` is fresh randomness supplied by the caller (16 bytes).
    """

    def __init__(
        self, identity: Identity, name: str, listen_url: str | None, nonce: bytes, room_id: bytes = b""
    ) -> None:
        if len(nonce) != NONCE_SIZE:
            raise ValueError(f"nonce must be {NONCE_SIZE} bytes")
        self._identity = identity
        self._name = name
        self._listen_url = listen_url
        self._nonce = nonce
        self._room_id = room_id
        self._hello: Hello | None = None
        self.state = LinkState.AWAIT_HELLO
        self.remote: RemotePeer | None = None

    def hello(self, heads: tuple[Head, ...]) -> bytes:
        """Our opening frame."""
        return encode_frame(
            Hello(
                PROTOCOL_VERSION,
                self._identity.sender_id,
                self._name,
                self._listen_url,
                self._nonce,
                heads,
                self._room_id,
            )
        )

    def receive(self, data: bytes | str) -> tuple[Frame | None, bytes | None]:
        """Check one incoming WebSocket message.

        Returns ``(frame, reply)``: ``frame`` is a frame for the peer logic to act on
        (``None`` for handshake frames, which are handled here) and ``reply`` is
        bytes to send back at once (our AUTH), if any. Raises ProtocolError.
        """
        if self.state is LinkState.CLOSED:
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "frame after close")
        if isinstance(data, str):
            raise ProtocolError(CloseCode.UNSUPPORTED_DATA, "text frames are not accepted")
        if len(data) > MAX_FRAME_BYTES:
            raise ProtocolError(CloseCode.TOO_BIG, f"frame of {len(data)} bytes is too big")
        try:
            frame = decode_frame(data)
        except CodecError as exc:
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, str(exc)) from None
        if self.state is LinkState.AWAIT_HELLO:
            return None, self._on_hello(frame)
        if self.state is LinkState.AWAIT_AUTH:
            self._on_auth(frame)
            return None, None
        if isinstance(frame, Hello | Auth):
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "handshake frame after the handshake")
        return frame, None

    def close(self) -> None:
        self.state = LinkState.CLOSED

    @property
    def is_open(self) -> bool:
        return self.state is LinkState.OPEN

    def _on_hello(self, frame: Frame) -> bytes:
        if not isinstance(frame, Hello):
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "expected HELLO first")
        if frame.version != PROTOCOL_VERSION:
            raise ProtocolError(
                CloseCode.PROTOCOL_ERROR, f"protocol version {frame.version} is not supported"
            )
        if frame.nonce == self._nonce:
            raise ProtocolError(CloseCode.POLICY_VIOLATION, "nonce replayed back to us")
        self._hello = frame
        self.state = LinkState.AWAIT_AUTH
        signature = self._identity.sign(_auth_payload(frame.nonce, self._nonce, self._identity.sender_id))
        return encode_frame(Auth(signature))

    def _on_auth(self, frame: Frame) -> None:
        hello = self._hello
        assert hello is not None
        if not isinstance(frame, Auth):
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "expected AUTH after HELLO")
        proof = _auth_payload(self._nonce, hello.nonce, hello.sender_id)
        if not verify_signature(hello.sender_id, proof, frame.signature):
            raise ProtocolError(
                CloseCode.POLICY_VIOLATION,
                f"peer {short_id(hello.sender_id)} failed to prove its identity",
            )
        self.state = LinkState.OPEN
        self.remote = RemotePeer(hello.sender_id, hello.name, hello.listen_url, hello.heads, hello.room_id)
