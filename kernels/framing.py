"""Length-prefixed JSON frames between the host and a run process.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON.
The run process writes with a blocking socket (`send_frame`); the host reads with
asyncio (`read_frame`) or parses what its non-blocking reads get (`FrameParser`). This module is imported on both sides, so it uses only the
standard library.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only the host reads streams, and run processes must not load asyncio
    import asyncio

_HEADER = struct.Struct(">I")
# Large enough for any sane result; a bigger frame means a broken or hostile peer.
MAX_FRAME_BYTES = 256 * 1024 * 1024


class FrameError(Exception):
    """The byte stream is not a sequence of frames (a peer died mid-frame, or lied)."""


def encode_frame(message: dict[str, Any]) -> bytes:
    """Serialise one message into its wire form."""
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return _HEADER.pack(len(body)) + body


def send_frame(sock: socket.socket, message: dict[str, Any]) -> None:
    """Write one frame on a blocking socket."""
    sock.sendall(encode_frame(message))


def recv_frame(sock: socket.socket) -> dict[str, Any] | None:
    """Read one frame from a blocking socket; None at a clean end of stream."""
    header = _recv_exactly(sock, _HEADER.size)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {length} bytes exceeds the {MAX_FRAME_BYTES} byte limit")
    body = _recv_exactly(sock, length)
    if body is None:
        raise FrameError("stream ended inside a frame")
    return _decode(body)


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """Read one frame from an asyncio stream; None at a clean end of stream."""
    import asyncio  # loaded already wherever this is awaited (see the TYPE_CHECKING import)

    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise FrameError("stream ended inside a frame header") from exc
        return None
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {length} bytes exceeds the {MAX_FRAME_BYTES} byte limit")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise FrameError("stream ended inside a frame") from exc
    return _decode(body)


class FrameParser:
    """Frames out of a byte stream that arrives in pieces (the host's non-blocking reads)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def partial(self) -> bool:
        """Whether part of a frame is waiting for the rest."""
        return bool(self._buffer)

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """The frames `data` completes, in order; `FrameError` if the stream is not frames."""
        buffer = self._buffer
        buffer += data
        frames = []
        start = 0
        while len(buffer) - start >= _HEADER.size:
            (length,) = _HEADER.unpack_from(buffer, start)
            if length > MAX_FRAME_BYTES:
                raise FrameError(
                    f"frame of {length} bytes exceeds the {MAX_FRAME_BYTES} byte limit"
                )
            end = start + _HEADER.size + length
            if len(buffer) < end:
                break
            frames.append(_decode(buffer[start + _HEADER.size : end]))
            start = end
        del buffer[:start]
        return frames


def _recv_exactly(sock: socket.socket, n: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            if chunks:
                raise FrameError("stream ended inside a frame")
            return None
        chunks += chunk
    return bytes(chunks)


def _decode(body: bytes | bytearray) -> dict[str, Any]:
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise FrameError(f"frame is not JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise FrameError(f"frame is a JSON {type(message).__name__}, expected an object")
    return message
