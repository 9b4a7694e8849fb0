"""Frame compression: a large frame may travel deflated.

Part of the pure core (zlib only: no I/O). A frame of :mod:`p2pchat.wire` is a CBOR
array, so its first byte is between 0x80 and 0x9f. A deflated frame is the byte
``DEFLATED`` (0x00, which no frame starts with) followed by the frame compressed
with raw DEFLATE (RFC 1951, no zlib header or checksum: the sealed channel already
authenticates every byte). Each frame is compressed on its own, so frames stay
independent of each other and of the order the shell writes them in.

What it saves: a batch of messages names the same few dozen authors over and over
(each entry's sender and the senders in its vector clock, 33 bytes each), and a
clock announcement names the room's members; signatures and hashes do not compress.
On a 10-peer burst of 50-byte random-letter texts, frames shrink to about 0.63 of
their size (benchmarks/README.md). A frame is sent deflated only when that is
smaller, and small frames (a single live message, a quiet heartbeat) are not tried.

Compressed data from a neighbour is untrusted: :func:`inflate_frame` refuses output
over ``MAX_FRAME_BYTES`` (a "zip bomb" costs it at most that much work), a stream
that does not end, and bytes after its end; the inflated frame is then decoded as
strictly as any other.

Compression and encryption together can leak what a frame holds through its length
(CRIME, BREACH): an attacker who can put chosen text next to a secret and watch the
sealed frames' sizes. Here every text a frame carries is an entry every member of the
room receives in full anyway, and only members can write; a member gains nothing it
does not see already, and an eavesdropper cannot choose text.
"""

from __future__ import annotations

import zlib
from typing import Final

from .codec import CodecError
from .wire import MAX_FRAME_BYTES

__all__ = ["DEFLATED", "MIN_DEFLATE_BYTES", "deflate_frame", "inflate_frame"]

DEFLATED: Final = 0x00
"""First byte of a deflated frame (a frame itself starts with a CBOR array header)."""
MIN_DEFLATE_BYTES: Final = 256
"""Frames shorter than this go as they are: too little to win for the work."""
_LEVEL: Final = 1
"""Fastest: on these frames level 6 saves under 2 % more for 10-15 % more time."""
_RAW_DEFLATE: Final = -15
"""Raw DEFLATE with the largest window (32 KiB): what a frame is inflated with, so that
a stream made with any window inflates."""
_DEFLATE_WINDOW: Final = -13
"""Raw DEFLATE, an 8 KiB window, to compress. Setting a compressor up costs time in
proportion to its window and hash table, paid per frame: with zlib's defaults (32 KiB,
memory level 8) that is about 45 µs, most of the time for a frame of a few KB. What
repeats in a frame (author ids, vector-clock ids) repeats within a few entries, so a
smaller window loses nothing measurable (sizes within 1 %, measured on frames of 1 to
400 messages)."""
_SMALL_FRAME_BYTES: Final = 16 * 1024
"""Below this, a smaller hash table too (memory level 7): cheaper to set up, and as good
on a frame this size; larger frames (catch-up batches) compress faster with level 8's."""


def deflate_frame(frame: bytes) -> bytes:
    """``frame`` as it goes on the link: deflated when that is smaller."""
    if len(frame) < MIN_DEFLATE_BYTES:
        return frame
    memory_level = 7 if len(frame) < _SMALL_FRAME_BYTES else 8
    compressor = zlib.compressobj(_LEVEL, zlib.DEFLATED, _DEFLATE_WINDOW, memory_level)
    packed = compressor.compress(frame) + compressor.flush()
    if len(packed) + 1 >= len(frame):
        return frame
    return bytes((DEFLATED,)) + packed


def inflate_frame(data: bytes) -> bytes:
    """The frame in ``data`` as it came off a link: inflated if it was deflated.

    Raises :class:`CodecError` for compressed data that does not inflate exactly to
    one frame of at most ``MAX_FRAME_BYTES``.
    """
    if not data or data[0] != DEFLATED:
        return data
    inflater = zlib.decompressobj(_RAW_DEFLATE)
    try:
        frame = inflater.decompress(data[1:], MAX_FRAME_BYTES + 1)
    except zlib.error as exc:
        raise CodecError(f"deflated frame: {exc}") from None
    if len(frame) > MAX_FRAME_BYTES:
        raise CodecError(f"deflated frame: inflates to over the limit of {MAX_FRAME_BYTES} bytes")
    if not inflater.eof:
        raise CodecError("deflated frame: the compressed stream is cut short")
    if inflater.unused_data:
        raise CodecError("deflated frame: bytes after the end of the compressed stream")
    return frame
