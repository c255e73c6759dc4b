"""The host's end of a run process: its socket, and the pipes behind its fds 1 and 2.

The run process hands over the read ends of its stdout and stderr pipes (SCM_RIGHTS,
`run_output.FdPipes`) when its first job arrives. `RunConnection` reads the socket and
the pipes with event-loop callbacks, no task, and queues what they carry in the order
the process wrote it, as far as the host can tell:

- before reading a pipe it takes every frame already on the socket: those were sent
  before the output now in the pipe (a script that prints, then runs a subprocess);
- before queueing a job's final frame it takes everything the pipes hold: a job's
  output always comes before its end, and never in the next job's.

Output written to a pipe after a frame already on the socket may be queued first: the
two arrive on separate channels, and nothing says which came first.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import socket
from typing import Any

from kernels import framing
from kernels.run_output import PIPES_MARK

Frames = asyncio.Queue[dict[str, Any] | None]  # None: the connection ended

_FINAL = frozenset({"result", "error"})
_READ_BYTES = 256 * 1024


class RunConnection:
    """Reads one run process's frames and output into `frames`; see the module's docstring."""

    def __init__(self, sock: socket.socket, pipe_fds: list[int], frames: Frames) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._frames = frames
        self._parser = framing.FrameParser()
        self._pipes = dict(zip(pipe_fds, ("stdout", "stderr"), strict=False))
        # Incremental: a character split between two reads is decoded whole.
        self._decoders = {fd: codecs.getincrementaldecoder("utf-8")("replace") for fd in pipe_fds}
        self._reading = True
        self._loop.add_reader(sock.fileno(), self._read_socket)
        for fd in pipe_fds:
            os.set_blocking(fd, False)
            self._loop.add_reader(fd, self._on_pipe, fd)

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
                data = self._sock.recv(_READ_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
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


async def connect(path: str, first_job: bytes, timeout_s: float) -> tuple[socket.socket, list[int]]:
    """Connect to the run process waiting on `path`, send it `first_job`, and take its
    pipes' read ends ([] if it closed the connection instead). `OSError` if nothing
    listens there; `TimeoutError` if the process does not answer in `timeout_s`."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, path)
        await loop.sock_sendall(sock, first_job)
        async with asyncio.timeout(timeout_s):
            fds = await _receive_pipes(sock)
    except BaseException:
        sock.close()
        raise
    return sock, fds


async def _receive_pipes(sock: socket.socket) -> list[int]:
    loop = asyncio.get_running_loop()
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, len(PIPES_MARK), 2)
        except (BlockingIOError, InterruptedError):
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(sock.fileno(), _wake, ready)
            try:
                await ready
            finally:
                loop.remove_reader(sock.fileno())
            continue
        except OSError:
            return []
        if data != PIPES_MARK or len(fds) != 2:
            for fd in fds:
                os.close(fd)
            return []
        return list(fds)


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)
