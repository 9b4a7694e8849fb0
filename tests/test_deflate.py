"""Deflated frames: round trips, what a hostile neighbour's compressed data gets, and a
node that keeps working with a neighbour whose big frames go deflated."""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_node import keys, make_pair, texts

from p2pchat.codec import CodecError
from p2pchat.deflate import DEFLATED, MIN_DEFLATE_BYTES, deflate_frame, inflate_frame
from p2pchat.node import Close, Output, Send
from p2pchat.protocol import CloseCode
from p2pchat.wire import MAX_FRAME_BYTES, Messages, decode_frame, encode_frame


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


@given(st.binary(max_size=4 * MIN_DEFLATE_BYTES))
def test_whatever_is_deflated_inflates_back_exactly(frame: bytes) -> None:
    sent = deflate_frame(b"\x80" + frame)  # (a frame starts with a CBOR array header)
    assert inflate_frame(sent) == b"\x80" + frame
    assert len(sent) <= len(frame) + 1


def test_a_small_frame_goes_as_it_is_and_a_big_one_deflated() -> None:
    small = b"\x82" + bytes(MIN_DEFLATE_BYTES - 2)
    assert deflate_frame(small) == small
    big = b"\x82" + bytes(4 * MIN_DEFLATE_BYTES)
    sent = deflate_frame(big)
    assert sent[0] == DEFLATED and len(sent) < len(big) // 10


def test_a_frame_that_does_not_shrink_goes_as_it_is() -> None:
    noise = b"\x82" + random.Random(0).randbytes(1000)
    assert deflate_frame(noise) == noise


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (bytes((DEFLATED,)) + b"\xff\xff\xff\xff", "deflated frame: "),
        (bytes((DEFLATED,)) + raw_deflate(b"\x82" + bytes(1000))[:-3], "cut short"),
        (bytes((DEFLATED,)) + raw_deflate(b"\x82" + bytes(1000)) + b"\x00", "bytes after the end"),
        (bytes((DEFLATED,)) + raw_deflate(bytes(MAX_FRAME_BYTES + 1)), "over the limit"),
        (bytes((DEFLATED,)), "cut short"),
    ],
    ids=["garbage", "truncated", "trailing", "bomb", "empty"],
)
def test_bad_compressed_data_is_refused_with_a_reason(data: bytes, error: str) -> None:
    with pytest.raises(CodecError, match=error):
        inflate_frame(data)


def test_a_bomb_costs_at_most_the_frame_limit() -> None:
    bomb = bytes((DEFLATED,)) + raw_deflate(bytes(64 * MAX_FRAME_BYTES))  # 64 MiB of zeros, ~64 KiB
    with pytest.raises(CodecError, match="over the limit"):
        inflate_frame(bomb)


def test_deflating_twice_does_not_make_a_frame() -> None:
    frame = encode_frame(Messages(()))
    twice = bytes((DEFLATED,)) + raw_deflate(bytes((DEFLATED,)) + raw_deflate(frame * 40))
    with pytest.raises(CodecError):
        decode_frame(inflate_frame(twice))


def test_a_node_deflates_a_burst_and_its_neighbour_takes_it() -> None:
    a, b, pipe = make_pair()
    frames: list[bytes] = []
    route = pipe.route

    def recording(source: int, outputs: Iterable[Output]) -> None:
        outputs = list(outputs)
        frames.extend(o.data for o in outputs if source == 1 and isinstance(o, Send) and not o.clear)
        route(source, outputs)

    pipe.route = recording  # type: ignore[method-assign]
    lines = [f"line {n} of a burst that rides in one frame" for n in range(50)]
    _, outputs = a.send_texts(lines, pipe.now, 0)
    pipe.route(1, outputs)
    pipe.run()
    assert texts(b) == lines and keys(a) == keys(b)
    assert any(data[0] == DEFLATED for data in frames)


def test_a_neighbour_sending_a_bomb_is_closed_and_banned_and_nothing_is_lost() -> None:
    a, b, pipe = make_pair()
    _, outputs = a.send_text("before", pipe.now, 0)
    pipe.route(1, outputs)
    pipe.run()
    before = keys(b)
    bomb = bytes((DEFLATED,)) + raw_deflate(bytes(8 * MAX_FRAME_BYTES))
    outputs = b.receive_unsealed(2, bomb, pipe.now)
    closes = [o for o in outputs if isinstance(o, Close)]
    assert closes and closes[0].code == CloseCode.PROTOCOL_ERROR
    assert "over the limit" in closes[0].reason and "banned" in closes[0].reason
    assert keys(b) == before and texts(b) == ["before"]
