"""The host's end of a run process: its socket, and the pipes behind its fds 1 and 2.

The run process hands over the read ends of its stdout and stderr pipes (SCM_RIGHTS,
`run_output.FdPipes`) with its first frame, `started`.
`RunConnection` reads the socket and the pipes with event-loop callbacks, no task, and
queues what they carry in the order the process wrote it, as far as the host can tell:

- before reading a pipe it takes every frame already on the socket: those were sent
  before the output now in the pipe (a script that prints, then runs a subprocess);
- before queueing a job's final frame it takes everything the pipes hold: a job's
  output always comes before its end, and never in the next job's.

Output written to a pipe after a frame already on the socket may be queued first: the
two arrive on separate channels, and nothing says which came first.
"""

from __future__ import annotations

import array
import asyncio
import codecs
import contextlib
import os
import socket
from typing import Any

from kernels import framing

Frames = asyncio.Queue[dict[str, Any] | None]  # None: the connection ended

_FINAL = frozenset({"result", "error"})
_READ_BYTES = 256 * 1024
_FDS = array.array("i")  # the C int an fd travels as


class RunConnection:
    """Reads one run process's frames and output into `frames`; see the module's docstring."""

    def __init__(self, sock: socket.socket, frames: Frames) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._frames = frames
        self._parser = framing.FrameParser()
        self._pipes: dict[int, str] = {}
        self._decoders: dict[int, codecs.IncrementalDecoder] = {}
        self._awaiting_pipes = True  # they come with the first bytes
        self._reading = True
        self._loop.add_reader(sock.fileno(), self._read_socket)

    async def send(self, data: bytes) -> None:
        await self._loop.sock_sendall(self._sock, data)

    def close(self) -> None:
        self._stop_reading()
        self._close_pipes()
        self._sock.close()

    # ------------------------------------------------------------ reading

    def _read_socket(self) -> None:
        while self._reading:
            try:
                if self._awaiting_pipes:
                    data = self._receive_pipes()
                else:
                    data = self._sock.recv(_READ_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except (OSError, framing.FrameError):
                data = b""
            if not data:
                self._end()
                return
            try:
                frames = self._parser.feed(data)
            except framing.FrameError:
                self._end()
                return
            for frame in frames:
                if frame.get("t") in _FINAL:
                    self._drain_pipes()
                self._frames.put_nowait(frame)
            if len(data) < _READ_BYTES:  # read dry: the next arrival calls again
                return

    def _receive_pipes(self) -> bytes:
        """The first bytes, and the pipes' read ends that come with them."""
        # recvmsg, not socket.recv_fds: that drops its flags on 3.11, and the fds would
        # be inherited by every program the host starts while it holds them.
        data, ancillary, _, _ = self._sock.recvmsg(
            _READ_BYTES, socket.CMSG_LEN(2 * _FDS.itemsize), socket.MSG_CMSG_CLOEXEC
        )
        fds = array.array("i")
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        if not data:
            return data
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            raise framing.FrameError("the run process sent no output pipes")
        self._awaiting_pipes = False
        for fd, name in zip(fds, ("stdout", "stderr"), strict=True):
            self._pipes[fd] = name
            # Incremental: a character split between two reads is decoded whole.
            self._decoders[fd] = codecs.getincrementaldecoder("utf-8")("replace")
            os.set_blocking(fd, False)
            self._loop.add_reader(fd, self._on_pipe, fd)
        return data

    def _on_pipe(self, fd: int) -> None:
        self._read_socket()  # frames sent before this output come first
        if fd in self._pipes:
            self._read_pipe(fd)

    def _read_pipe(self, fd: int) -> bool:
        """Queue one chunk of `fd`'s output; False when it is empty or ended."""
        try:
            chunk = os.read(fd, 65536)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            chunk = b""
        text = self._decoders[fd].decode(chunk, final=not chunk)
        if text:
            self._frames.put_nowait({"t": "stream", "name": self._pipes[fd], "text": text})
        if not chunk:  # every write end is closed: the process and its children are gone
            self._close_pipe(fd)
            return False
        return True

    def _drain_pipes(self) -> None:
        for fd in list(self._pipes):
            while self._read_pipe(fd):
                pass

    def _end(self) -> None:
        """The process closed its end (or broke the stream): queue what is left, then None."""
        self._stop_reading()
        self._drain_pipes()
        self._close_pipes()  # output of what outlives the process belongs to no job
        self._frames.put_nowait(None)

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._sock.fileno())

    def _close_pipes(self) -> None:
        for fd in list(self._pipes):
            self._close_pipe(fd)

    def _close_pipe(self, fd: int) -> None:
        self._loop.remove_reader(fd)
        with contextlib.suppress(OSError):
            os.close(fd)
        del self._pipes[fd]


async def connect(path: str) -> socket.socket:
    """A non-blocking connection to the run process waiting on `path`; `OSError` if none
    can be made. The process is already blocked in accept(), so this rarely waits."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        try:
            sock.connect(path)
        except (BlockingIOError, InterruptedError):  # its backlog is full: wait our turn
            await asyncio.get_running_loop().sock_connect(sock, path)
    except BaseException:
        sock.close()
        raise
    return sock
