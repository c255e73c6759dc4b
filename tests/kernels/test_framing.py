"""Frames between the host and a run process: what arrives in pieces comes out whole."""

from __future__ import annotations

import json
import struct

import pytest

from kernels.framing import MAX_FRAME_BYTES, FrameError, FrameParser, encode_frame


def test_frames_split_anywhere_come_out_whole_and_in_order():
    messages = [{"t": "stream", "text": "é" * n} for n in range(0, 300, 37)]
    wire = b"".join(encode_frame(m) for m in messages)
    for piece in (1, 2, 3, 7, 64, len(wire)):
        parser = FrameParser()
        out = []
        for start in range(0, len(wire), piece):
            out += parser.feed(wire[start : start + piece])
        assert out == messages
        assert not parser.partial


def test_a_partial_frame_waits_for_the_rest():
    wire = encode_frame({"t": "result", "value": 1})
    parser = FrameParser()
    assert parser.feed(wire[:-1]) == []
    assert parser.partial
    assert parser.feed(wire[-1:]) == [{"t": "result", "value": 1}]


def test_an_oversized_length_is_refused_before_waiting_for_it():
    with pytest.raises(FrameError, match="exceeds"):
        FrameParser().feed(struct.pack(">I", MAX_FRAME_BYTES + 1))


@pytest.mark.parametrize(
    ("body", "expected"), [(b"{nope", "not JSON"), (json.dumps([1]).encode(), "JSON list")]
)
def test_a_body_that_is_not_a_json_object_is_refused(body, expected):
    with pytest.raises(FrameError, match=expected):
        FrameParser().feed(struct.pack(">I", len(body)) + body)
