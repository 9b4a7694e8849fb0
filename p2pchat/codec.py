"""Strict CBOR for untrusted bytes, and exact type checks for decoded values.

Part of the pure core. cbor2's defaults are generous: it decodes dozens of
semantic tags (regular expressions, e-mail messages, huge decimals, shared and
cyclic references), ignores trailing bytes and accepts indefinite lengths. Here
every tag is refused, trailing bytes, duplicate keys, indefinite lengths and
non-string map keys are errors, nesting depth is capped, and the helpers below
check exact types (``True`` is not an int here, NaN is not a number we take).

Every failure raises :class:`CodecError` with a message that says what was wrong.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import cbor2

__all__ = [
    "MAX_DEPTH",
    "CodecError",
    "dumps",
    "expect_array",
    "expect_bytes",
    "expect_int",
    "expect_map",
    "expect_optional",
    "expect_str",
    "strict_loads",
]

MAX_DEPTH = 8
"""Deepest container nesting any p2pchat structure needs (frames use at most 5)."""

T = TypeVar("T")


class CodecError(ValueError):
    """Bytes from the network that are not a well-formed p2pchat structure."""


def _refuse_tag(decoder: object, tag: object = None) -> NoReturn:
    raise cbor2.CBORDecodeError("CBOR tags are not allowed")


class _NoSemanticTags(dict[int, Callable[[Any], Any]]):
    """A decoder table that answers every tag number, built-in ones included, with a refusal."""

    def __missing__(self, tag: int) -> Callable[[Any], Any]:
        return _refuse_tag


_NO_TAGS = _NoSemanticTags()


def strict_loads(data: bytes, *, max_depth: int = MAX_DEPTH) -> object:
    """Decode exactly one CBOR item from ``data`` under the strict rules above."""
    if not isinstance(data, bytes):
        raise CodecError(f"expected bytes, got {type(data).__name__}")
    if not data:
        raise CodecError("empty input")
    stream = io.BytesIO(data)
    decoder = cbor2.CBORDecoder(
        stream,
        semantic_decoders=_NO_TAGS,
        tag_hook=_refuse_tag,
        max_depth=max_depth,
        allow_indefinite=False,
        allow_duplicate_keys=False,
        strict_hashable_types=True,
    )
    try:
        value = decoder.decode()
    except Exception as exc:  # cbor2 raises several types; all mean "malformed".
        raise CodecError(f"malformed CBOR: {exc}") from None
    if stream.tell() != len(data):
        raise CodecError(f"{len(data) - stream.tell()} trailing bytes after the CBOR item")
    return value


def dumps(value: object) -> bytes:
    """Encode ``value`` deterministically (canonical map order, shortest forms)."""
    return cbor2.dumps(value, canonical=True)


# Exact type checks ------------------------------------------------------------


def expect_int(value: object, what: str, *, lo: int = 0, hi: int = 2**63 - 1) -> int:
    """``value`` as an int in ``[lo, hi]``; bools and floats are refused."""
    if type(value) is not int:
        raise CodecError(f"{what}: expected an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise CodecError(f"{what}: {value} is outside [{lo}, {hi}]")
    return value


def expect_bytes(value: object, what: str, *, size: int | None = None, max_size: int = 2**20) -> bytes:
    """``value`` as bytes, of exactly ``size`` bytes when given."""
    if type(value) is not bytes:
        raise CodecError(f"{what}: expected a byte string, got {type(value).__name__}")
    if size is not None and len(value) != size:
        raise CodecError(f"{what}: expected {size} bytes, got {len(value)}")
    if len(value) > max_size:
        raise CodecError(f"{what}: {len(value)} bytes is over the limit of {max_size}")
    return value


def expect_str(value: object, what: str, *, max_bytes: int) -> str:
    """``value`` as text of at most ``max_bytes`` UTF-8 bytes."""
    if type(value) is not str:
        raise CodecError(f"{what}: expected text, got {type(value).__name__}")
    # len(str) <= len(utf-8) <= 4 * len(str): only encode when it could matter.
    if len(value) * 4 > max_bytes and len(value.encode("utf-8", "surrogatepass")) > max_bytes:
        raise CodecError(f"{what}: text is over the limit of {max_bytes} bytes")
    return value


def expect_array(
    value: object, what: str, *, length: int | None = None, max_length: int = 10_000
) -> list[object]:
    """``value`` as a list, of exactly ``length`` items when given."""
    if type(value) is not list:
        raise CodecError(f"{what}: expected an array, got {type(value).__name__}")
    if length is not None and len(value) != length:
        raise CodecError(f"{what}: expected {length} items, got {len(value)}")
    if len(value) > max_length:
        raise CodecError(f"{what}: {len(value)} items is over the limit of {max_length}")
    return value


def expect_map(value: object, what: str, *, max_length: int = 10_000) -> dict[object, object]:
    """``value`` as a dict of at most ``max_length`` entries."""
    if type(value) is not dict:
        raise CodecError(f"{what}: expected a map, got {type(value).__name__}")
    if len(value) > max_length:
        raise CodecError(f"{what}: {len(value)} entries is over the limit of {max_length}")
    return value


def expect_optional(value: object, parse: Callable[[object], T]) -> T | None:
    """``None`` stays ``None``; anything else must pass ``parse``."""
    return None if value is None else parse(value)
