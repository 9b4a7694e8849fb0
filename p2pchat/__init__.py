"""p2pchat: serverless group chat with one total order on every peer.

Peers gossip signed messages over WebSockets. Each peer orders its copy of the
conversation by ``(lamport, sender_id)``, so every peer holding the same
messages shows them in the same order. See DESIGN notes in the README.

The pure core (no I/O): :mod:`p2pchat.clock`, :mod:`p2pchat.identity`,
:mod:`p2pchat.message`, :mod:`p2pchat.log`, :mod:`p2pchat.codec`,
:mod:`p2pchat.wire`.
"""

from .clock import Causality, LamportClock, VectorClock
from .identity import Identity
from .log import LogConfig, OrderedLog
from .message import Message, MessageId, MessageKey

__all__ = [
    "Causality",
    "Identity",
    "LamportClock",
    "LogConfig",
    "Message",
    "MessageId",
    "MessageKey",
    "OrderedLog",
    "VectorClock",
]

__version__ = "0.1.0"
