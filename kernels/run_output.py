"""A run process's output: its channel to the host, and what feeds it.

`Channel` sends frames (`framing.py`) on the run's connection, from any thread.
`FrameWriter` is what `sys.stdout` and `sys.stderr` become during a job: text turns into
`stream` frames. `FdRelay` does the same for what reaches file descriptors 1 and 2
directly (subprocesses, C code). Used by `child.py`, inside kernels: standard library only.
"""

from __future__ import annotations

import _thread
import array
import contextlib
import fcntl
import io
import os
import selectors
import socket
import termios
import threading
import time
from typing import Any

from kernels import framing


class Channel:
    """The run's connection to the host; thread-safe, because fd relays share it."""

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


class FdRelay:
    """Sends what reaches file descriptors 1 and 2 (subprocesses, C code) as frames.

    Made while the run process still waits for its job (`zygote.py`), so its pipes and
    its one thread cost the run nothing; `attach` gives it the job's channel. Between
    two jobs of a session, `drain` makes sure the first job's output is sent before its
    end; after the last, `close` does.
    """

    def __init__(self) -> None:
        self._channel: Channel | None = None
        self._attached = threading.Event()
        self._ends: dict[int, str] = {}
        # Held while a chunk is read and sent: with it held and both pipes empty,
        # everything written so far has been sent.
        self._lock = threading.Lock()
        for fd, name in ((1, "stdout"), (2, "stderr")):
            read_end, write_end = os.pipe()
            os.set_blocking(read_end, False)
            os.dup2(write_end, fd)
            os.close(write_end)
            self._ends[read_end] = name
        self._pipes = {fd: os.fstat(fd).st_ino for fd in (1, 2)}
        # A bare thread rather than a threading.Thread: starting one of those waits for
        # it to run, and this is made in every run process.
        self._finished = threading.Event()
        _thread.start_new_thread(self._relay_until_closed, ())

    def attach(self, channel: Channel) -> None:
        self._channel = channel
        self._attached.set()

    def _relay_until_closed(self) -> None:
        try:
            self._relay()
        finally:
            self._finished.set()

    def _relay(self) -> None:
        with selectors.DefaultSelector() as selector:
            for read_end, name in self._ends.items():
                selector.register(read_end, selectors.EVENT_READ, name)
            while selector.get_map():
                for key, _ in selector.select():
                    with self._lock:
                        try:
                            chunk = os.read(key.fd, 65536)
                        except BlockingIOError:
                            continue
                        if not chunk:
                            selector.unregister(key.fd)
                            os.close(key.fd)
                            continue
                        self._send(key.data, chunk)

    def _send(self, name: str, data: bytes) -> None:
        self._attached.wait()
        with contextlib.suppress(OSError):
            assert self._channel is not None
            text = data.decode("utf-8", "replace")
            self._channel.send({"t": "stream", "name": name, "text": text})

    def drain(self, timeout: float = 1.0) -> bool:
        """Wait until what fds 1 and 2 received so far is sent; False if that cannot be
        told (a script pointed them elsewhere): then the process must not be reused."""
        try:
            if any(os.fstat(fd).st_ino != inode for fd, inode in self._pipes.items()):
                return False
        except OSError:  # closed
            return False
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if not any(_unread(read_end) for read_end in self._ends):
                    return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.0002)  # the relay is reading it

    def close(self) -> None:
        """Stop capturing and wait until everything written so far has been sent."""
        devnull = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            os.dup2(devnull, fd)  # drops our pipes' last write ends: the relay sees EOF
        os.close(devnull)
        self._attached.set()
        self._finished.wait(timeout=2)


def _unread(fd: int) -> int:
    """How many bytes wait in the pipe `fd`."""
    count = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, count)
    return count[0]
