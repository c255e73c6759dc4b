"""A run process's output: its channel to the host, and what feeds it.

`Channel` sends frames (`framing.py`) on the run's connection, from any thread.
`FrameWriter` is what `sys.stdout` and `sys.stderr` become during a job: text turns into
`stream` frames. `FdPipes` makes file descriptors 1 and 2 pipes that the host reads
(what subprocesses and C code write). Used by `child.py`, inside kernels: standard library only.
"""

from __future__ import annotations

import io
import os
import socket
import threading
from typing import Any

from kernels import framing


class Channel:
    """The run's connection to the host; thread-safe: a script's threads print too."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        data = framing.encode_frame(message)
        with self._lock:
            self._sock.sendall(data)


class FrameWriter(io.TextIOBase):
    """A text stream whose writes become `stream` frames, flushed at each newline.

    Both stdout and stderr write through the same channel, so the host sees them in
    the order the script wrote them.
    """

    def __init__(self, channel: Channel, name: str) -> None:
        super().__init__()
        self._channel = channel
        self._name = name
        self._buffer: list[str] = []

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._buffer.append(text)
        if "\n" in text or sum(map(len, self._buffer)) > 8192:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if self._buffer:
            text = "".join(self._buffer)
            self._buffer.clear()
            self._channel.send({"t": "stream", "name": self._name, "text": text})


class FdPipes:
    """Fds 1 and 2 as pipes whose read ends the host reads: what subprocesses and C code
    write there reaches the host without a thread in this process.

    Made while the run process still waits for its job (`zygote.py`). `hand_over` sends
    the read ends to the host (SCM_RIGHTS) with the first job's `started` frame; the
    host reads them on its event loop and, when a job's final frame arrives, first takes
    what the pipes hold, so a job's output always comes before its end
    (`run_connection.py`).

    A relay thread here did the same and cost every run process about 1.4 ms of CPU:
    starting and ending it, and the copy-on-write faults that a second thread turns
    into cross-CPU TLB flushes.
    """

    def __init__(self) -> None:
        self._read_ends: list[int] = []
        for fd in (1, 2):
            read_end, write_end = os.pipe()
            os.dup2(write_end, fd)
            os.close(write_end)
            self._read_ends.append(read_end)
        self._pipes = {fd: os.fstat(fd).st_ino for fd in (1, 2)}

    def hand_over(self, sock: socket.socket, frame: bytes) -> None:
        """Send `frame` with the read ends (stdout's, then stderr's) attached, once."""
        if not self._read_ends:
            return
        try:
            socket.send_fds(sock, [frame], self._read_ends)
        finally:
            for fd in self._read_ends:
                os.close(fd)
            self._read_ends = []

    def intact(self) -> bool:
        """Whether fds 1 and 2 are still these pipes: a script that pointed them
        elsewhere leaves a process that must not take another job."""
        try:
            return all(os.fstat(fd).st_ino == inode for fd, inode in self._pipes.items())
        except OSError:  # closed
            return False
