"""One connection's handshake, encryption and framing rules, sans-IO.

Part of the pure core. A :class:`Link` turns the bytes of one WebSocket
connection into checked frames and seals what we send; it never touches a
socket. The peer-wide logic (the log, gossip, repair) lives in
:mod:`p2pchat.node`, which owns one Link per connection.

The handshake, symmetric but for the roles of the key exchange (the side that
dialed is its client)::

    -> HELLO (our id, fresh nonce, fresh ephemeral X25519 key)      in clear
    <- HELLO
       both derive the session keys (channel.EphemeralKey.agree)
    -> AUTH  sealed: signature over the transcript, name, URL, room   (dialer)
    <- AUTH  only once the dialer's AUTH verified                      (acceptor)
    ... OPEN: every frame sealed (channel.SecureChannel), any frame but HELLO and AUTH

The AUTH signature covers :data:`AUTH_CONTEXT`, the signer's role, both HELLO
frames exactly as they crossed the wire (so both ids, both nonces and both
ephemeral keys) and the signer's room id. It proves that the holder of the
identity key is the one that made this link's ephemeral key, on this very
link: it cannot be replayed into another handshake (the other side's nonce and
ephemeral key are fresh) nor relayed by someone in the middle (who would have
to swap in its own ephemeral key, which changes the transcript). Since only
the two ends can derive the session keys, everything after the HELLOs --
names, rooms, heads, messages -- is unreadable and unalterable on the way.

The dialer proves itself first: a peer that accepts connections tells its name,
address and room only to a caller that proved its identity. A dialer that knows
which peer it wants (a join URL naming the id, see :mod:`p2pchat.address`)
refuses a HELLO from any other id before it says anything about itself.
Anything out of order, undecodable, oversized or not opening is a
:class:`ProtocolError` that carries a WebSocket close code and a reason.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .channel import EPHEMERAL_SEED_SIZE, EphemeralKey, OpenError, SecureChannel
from .codec import CodecError
from .identity import Identity, short_id, verify_signature
from .wire import (
    MAX_FRAME_BYTES,
    NONCE_SIZE,
    PROTOCOL_VERSION,
    Auth,
    Frame,
    Hello,
    decode_frame,
    encode_frame,
)

__all__ = ["LINK_RANDOMNESS", "CloseCode", "Link", "LinkState", "ProtocolError"]

AUTH_CONTEXT = b"p2pchat-auth-v3"
LINK_RANDOMNESS = NONCE_SIZE + EPHEMERAL_SEED_SIZE
"""Fresh random bytes a Link needs: its nonce, then its ephemeral key's seed."""
DIALER, ACCEPTOR = b"\x01", b"\x02"


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
    room_id: bytes = b""
    pristine: bool = False
    invite: bytes = b""
    leaving: bool = False
    """It left the room and lingers until a neighbour holds its LEAVE (see wire.Auth)."""


def auth_payload(
    signer_is_dialer: bool, dialer_hello: bytes, acceptor_hello: bytes, signer_room: bytes
) -> bytes:
    """What each side signs in its AUTH (see the module docstring)."""
    role = DIALER if signer_is_dialer else ACCEPTOR
    return AUTH_CONTEXT + role + dialer_hello + acceptor_hello + signer_room


class Link:
    """The handshake, frame checks and encryption of one connection.

    ``randomness`` is fresh randomness supplied by the caller (:data:`LINK_RANDOMNESS`
    bytes). ``dialer`` says which side we are; ``expected_id``, for a dialer, is the
    peer the join URL named (None: trust whoever answers); ``invite``, an invite secret
    to present to that peer (only with ``expected_id``: never to whoever answers).
    """

    def __init__(
        self,
        identity: Identity,
        name: str,
        listen_url: str | None,
        randomness: bytes,
        room_id: bytes = b"",
        *,
        dialer: bool,
        expected_id: bytes | None = None,
        pristine: bool = False,
        invite: bytes = b"",
        leaving: bool = False,
    ) -> None:
        if invite and (expected_id is None or not dialer):
            raise ValueError("an invite is presented only by a dialer, to the peer its URL names")
        if len(randomness) != LINK_RANDOMNESS:
            raise ValueError(f"a link needs {LINK_RANDOMNESS} bytes of fresh randomness")
        self._identity = identity
        self._name = name
        self._listen_url = listen_url
        self._nonce = randomness[:NONCE_SIZE]
        self._ephemeral = EphemeralKey.from_seed(randomness[NONCE_SIZE:])
        self._room_id = room_id
        self._pristine = pristine
        self._invite = invite
        self._leaving = leaving
        self.dialer = dialer
        self.expected_id = expected_id
        self._our_hello = encode_frame(
            Hello(PROTOCOL_VERSION, identity.sender_id, self._nonce, self._ephemeral.public)
        )
        self._their_hello: bytes = b""
        self._claimed_id: bytes | None = None
        self._channel: SecureChannel | None = None
        self.state = LinkState.AWAIT_HELLO
        self.remote: RemotePeer | None = None

    def hello(self) -> bytes:
        """Our opening frame (in clear)."""
        return self._our_hello

    @property
    def says_leaving(self) -> bool:
        """Whether our AUTH on this link says we are leaving (wire.Auth.leaving)."""
        return self._leaving

    @property
    def claimed_id(self) -> bytes | None:
        """The id the other side said in its HELLO (proven only once :attr:`remote` is set)."""
        return self._claimed_id

    def receive(self, data: bytes | str) -> tuple[Frame | None, bytes | None]:
        """Check one incoming WebSocket message.

        Returns ``(frame, reply)``: ``frame`` is a frame for the peer logic to act on
        (``None`` for handshake frames, which are handled here) and ``reply`` is
        bytes to send back at once (our sealed AUTH), if any. Raises ProtocolError.
        """
        data = self._check_size(data)
        if self.state is LinkState.AWAIT_HELLO:
            return None, self._on_hello(self._decode(data), data)
        if self.state is LinkState.AWAIT_AUTH:
            self._on_auth(self._decode(self.unseal(data)))
            return None, None if self.dialer else self._our_auth()
        return self.parse(self.unseal(data)), None

    def unseal(self, data: bytes | str) -> bytes:
        """The plaintext of the next sealed frame (after both HELLOs). Raises ProtocolError."""
        data = self._check_size(data)
        channel = self._channel
        if channel is None:
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "sealed frame before the key exchange")
        try:
            return channel.open(data)
        except OpenError as exc:
            raise ProtocolError(CloseCode.POLICY_VIOLATION, str(exc)) from None

    def parse(self, plaintext: bytes) -> Frame:
        """The frame in ``plaintext`` (from :meth:`unseal`) once the link is open."""
        if self.state is not LinkState.OPEN:
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "frame before the handshake is complete")
        frame = self._decode(plaintext)
        if isinstance(frame, Hello | Auth):
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "handshake frame after the handshake")
        return frame

    def seal(self, plaintext: bytes) -> bytes:
        """A frame of ours, sealed for the other side."""
        if self._channel is None:
            raise RuntimeError("no session keys yet: the other side's HELLO has not arrived")
        return self._channel.seal(plaintext)

    def close(self) -> None:
        self.state = LinkState.CLOSED

    @property
    def is_open(self) -> bool:
        return self.state is LinkState.OPEN

    def _check_size(self, data: bytes | str) -> bytes:
        if self.state is LinkState.CLOSED:
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "frame after close")
        if isinstance(data, str):
            raise ProtocolError(CloseCode.UNSUPPORTED_DATA, "text frames are not accepted")
        if len(data) > MAX_FRAME_BYTES:
            raise ProtocolError(CloseCode.TOO_BIG, f"frame of {len(data)} bytes is too big")
        return data

    @staticmethod
    def _decode(data: bytes) -> Frame:
        try:
            return decode_frame(data)
        except CodecError as exc:
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, str(exc)) from None

    def _on_hello(self, frame: Frame, raw: bytes) -> bytes | None:
        if not isinstance(frame, Hello):
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "expected HELLO first")
        if frame.version != PROTOCOL_VERSION:
            raise ProtocolError(
                CloseCode.PROTOCOL_ERROR,
                f"protocol version {frame.version} is not supported (this peer speaks {PROTOCOL_VERSION})",
            )
        if frame.nonce == self._nonce or frame.ephemeral_key == self._ephemeral.public:
            raise ProtocolError(CloseCode.POLICY_VIOLATION, "nonce or ephemeral key replayed back to us")
        expected = self.expected_id
        if expected is not None and frame.sender_id != expected:
            raise ProtocolError(
                CloseCode.POLICY_VIOLATION,
                f"expected peer {short_id(expected)} at this URL but {short_id(frame.sender_id)} "
                "answered: refusing (wrong URL, or someone in the middle)",
            )
        self._claimed_id = frame.sender_id
        self._their_hello = raw  # the very bytes received
        try:
            self._channel = self._ephemeral.agree(frame.ephemeral_key, dialer=self.dialer)
        except OpenError as exc:
            raise ProtocolError(CloseCode.POLICY_VIOLATION, str(exc)) from None
        self.state = LinkState.AWAIT_AUTH
        return self._our_auth() if self.dialer else None

    def _our_auth(self) -> bytes:
        assert self._channel is not None
        signature = self._identity.sign(self._transcript(signer_is_dialer=self.dialer, room=self._room_id))
        auth = Auth(
            signature,
            self._name,
            self._listen_url,
            self._room_id,
            self._pristine,
            self._invite,
            self._leaving,
        )
        return self._channel.seal(encode_frame(auth))

    def _transcript(self, *, signer_is_dialer: bool, room: bytes) -> bytes:
        ours, theirs = self._our_hello, self._their_hello
        dialer_hello, acceptor_hello = (ours, theirs) if self.dialer else (theirs, ours)
        return auth_payload(signer_is_dialer, dialer_hello, acceptor_hello, room)

    def _on_auth(self, frame: Frame) -> None:
        claimed = self._claimed_id
        assert claimed is not None
        if not isinstance(frame, Auth):
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "expected AUTH after HELLO")
        proof = self._transcript(signer_is_dialer=not self.dialer, room=frame.room_id)
        if not verify_signature(claimed, proof, frame.signature):
            raise ProtocolError(
                CloseCode.POLICY_VIOLATION,
                f"peer {short_id(claimed)} failed to prove its identity",
            )
        self.state = LinkState.OPEN
        self.remote = RemotePeer(
            claimed, frame.name, frame.listen_url, frame.room_id, frame.pristine, frame.invite, frame.leaving
        )
