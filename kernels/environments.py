"""Locked, cached Python environments built with uv, one per lock.

A requirement set is locked once (`uv pip compile`, cached under `root/locks/`), the
lock's hash names the environment, and each environment is built once into a temporary
directory and renamed into place, so `root/<id>/` is either complete or absent. A
script without third-party requirements runs in the default environment, the running
interpreter, and never reaches uv or the network.

Layout under `root`:

    locks/<reqhash>.txt        the lock of one requirement set
    <id>/                      a built virtual environment
    <id>/.gristmill-env.json   written before the rename: requirements and lock
    <id>.lock                  flock target, so two processes build an environment once
    .build-<id>-*/             an environment being built (removed if the build fails)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from kernels.errors import EnvironmentBuildError
from kernels.requirements import canonical_requirements, normalize_name, requirement_name

__all__ = ["EnvironmentSpec", "EnvironmentStore"]

DEFAULT_ID = "default"
MARKER_NAME = ".gristmill-env.json"
# Every environment must be able to host a Jupyter kernel, whatever the script needs.
KERNEL_REQUIREMENT = "ipykernel"
# How long a process waits for another one that is building the same environment.
BUILD_WAIT_SECONDS = 30 * 60
# uv's message can be long (a whole resolution tree); the end says what failed.
MESSAGE_TAIL_LINES = 12

# uv's phrases that single out one package (its resolver messages are PubGrub's); uv
# wraps long lines to the terminal's width, so any whitespace may separate the words.
_CULPRIT_PHRASES = (
    re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s+was\s+not\s+found\s+in\s+the"),
    re.compile(
        r"there\s+(?:is|are)\s+no\s+versions?\s+of\s+([A-Za-z0-9][A-Za-z0-9._-]*?)(?=[\[<>=!~{\s,]|$)",
        re.MULTILINE,
    ),
)


@dataclass(frozen=True)
class EnvironmentSpec:
    """A Python environment a kernel can run in.

    `id` is "default" for the running interpreter, otherwise the first 16 hex digits of
    the sha256 of `lock`. `python` is the environment's interpreter. `requirements` are
    the script's own requirements (without the kernel's), canonical and sorted.
    """

    id: str
    python: Path
    requirements: tuple[str, ...]
    lock: str | None


class EnvironmentStore:
    """Resolves requirement sets to built environments under `root`, building each once.

    `uv` is the uv executable (found next to the interpreter, in the `uv` package or on
    PATH when not given). `index_url` replaces uv's default package index; uv's own
    environment variables (`UV_INDEX_URL`, `UV_CACHE_DIR`, ...) are honoured as well.
    """

    def __init__(self, root: Path, *, uv: str | None = None, index_url: str | None = None) -> None:
        self.root = Path(root)
        self._uv = uv
        self._index_url = index_url
        # Concurrent resolves in this process wait on one lock per key instead of both
        # running uv; across processes `root/<id>.lock` plays the same part.
        self._locks: dict[str, asyncio.Lock] = {}
        self._default = EnvironmentSpec(DEFAULT_ID, Path(sys.executable), (), None)

    def default(self) -> EnvironmentSpec:
        """The environment of the running interpreter, with nothing added to it."""
        return self._default

    async def resolve(self, requirements: Sequence[str]) -> EnvironmentSpec:
        """The built environment for `requirements`, locking and building it if needed.

        No requirements -> the default environment, without a subprocess or the network.
        A requirement set resolved before (by any process sharing `root`) costs two file
        reads. Raises `EnvironmentBuildError` naming the package at fault when the set
        cannot be resolved or installed.
        """
        wanted = canonical_requirements(requirements)
        if not wanted:
            return self.default()
        lock = await self._lock_text(wanted)
        env_id = hashlib.sha256(lock.encode()).hexdigest()[:16]
        spec = EnvironmentSpec(env_id, self.root / env_id / "bin" / "python", tuple(wanted), lock)
        if not (self.root / env_id / MARKER_NAME).is_file():
            async with self._local_lock(f"env:{env_id}"):
                await self._build(spec)
        return spec

    # -- locking -------------------------------------------------------------------

    async def _lock_text(self, wanted: list[str]) -> str:
        """The lock of `wanted` (plus ipykernel), from the cache or from `uv pip compile`."""
        # The lock depends on the interpreter and the index as well as the requirements.
        key_text = "\n".join([sys.implementation.cache_tag or "", self._index_url or "", *wanted])
        path = self.root / "locks" / f"{hashlib.sha256(key_text.encode()).hexdigest()}.txt"
        if path.is_file():
            return path.read_text()
        async with self._local_lock(f"lock:{path.stem}"):
            if path.is_file():
                return path.read_text()
            path.parent.mkdir(parents=True, exist_ok=True)
            names = {requirement_name(text) for text in wanted}
            extra = [] if KERNEL_REQUIREMENT in names else [KERNEL_REQUIREMENT]
            with tempfile.TemporaryDirectory(dir=path.parent, prefix=".compile-") as scratch:
                source = Path(scratch) / "requirements.in"
                source.write_text("\n".join([*wanted, *extra]) + "\n")
                version = f"{sys.version_info.major}.{sys.version_info.minor}"
                output = await self._run_uv(
                    [
                        "pip",
                        "compile",
                        str(source),
                        # The target interpreter itself, so uv neither searches for one
                        # nor downloads one, and platform markers match the kernel's.
                        "--python",
                        sys.executable,
                        "--python-version",
                        version,
                        "--no-header",
                        "--no-annotate",
                        "--generate-hashes",
                        "--quiet",
                    ],
                    doing="resolve",
                    wanted=wanted,
                )
            # A header naming the interpreter makes the lock's hash (the environment id)
            # differ between Python versions even when the pins happen to agree.
            lock = f"# gristmill lock for {sys.implementation.cache_tag}\n{output}"
            _write_atomically(path, lock)
            return lock

    # -- building ------------------------------------------------------------------

    async def _build(self, spec: EnvironmentSpec) -> None:
        """Build `spec` at `root/<id>` unless some process already has."""
        final = self.root / spec.id
        async with self._file_lock(self.root / f"{spec.id}.lock"):
            if (final / MARKER_NAME).is_file():
                return  # another process built it while we waited for the lock
            # Holding the flock, no one else is building this id: leftovers are debris
            # of a killed build, and a marker-less final directory is never valid.
            for debris in self.root.glob(f".build-{spec.id}-*"):
                shutil.rmtree(debris, ignore_errors=True)
            if final.exists():
                shutil.rmtree(final)
            staging = Path(tempfile.mkdtemp(dir=self.root, prefix=f".build-{spec.id}-"))
            try:
                await self._install(spec, staging)
                marker = {
                    "id": spec.id,
                    "requirements": list(spec.requirements),
                    "lock": spec.lock,
                    "python": sys.executable,
                    "built_at": time.time(),
                }
                _write_atomically(staging / MARKER_NAME, json.dumps(marker, indent=2) + "\n")
                staging.chmod(0o755)  # mkdtemp's 0700 would hide it from other users
                staging.rename(final)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise

    async def _install(self, spec: EnvironmentSpec, target: Path) -> None:
        """Create a virtual environment at `target` and install the lock into it."""
        assert spec.lock is not None
        wanted = list(spec.requirements)
        # --relocatable: the environment is built under a temporary name and renamed,
        # so its scripts must not hard-code the directory they were installed in.
        await self._run_uv(
            ["venv", "--python", sys.executable, "--relocatable", "--quiet", str(target)],
            doing="create the environment for",
            wanted=wanted,
        )
        lock_file = target / "gristmill-lock.txt"
        lock_file.write_text(spec.lock)
        await self._run_uv(
            [
                "pip",
                "install",
                "--python",
                str(target / "bin" / "python"),
                "-r",
                str(lock_file),
                "--quiet",
            ],
            doing="install",
            wanted=wanted,
        )
        lock_file.unlink()

    # -- processes and locks -------------------------------------------------------

    async def _run_uv(self, args: list[str], *, doing: str, wanted: list[str]) -> str:
        """Run uv with `args` and return its stdout; a failure becomes a readable error."""
        command = [self._uv_executable(), *args]
        if self._index_url is not None and args[0] == "pip":
            command += ["--index-url", self._index_url]
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                # Not the caller's directory: a pyproject.toml or uv.toml there must not
                # change how a script's environment is resolved.
                cwd=self.root,
            )
        except OSError as error:
            raise EnvironmentBuildError(
                f"cannot {doing} the requirements {wanted}: cannot run uv ({command[0]}): "
                f"{error.strerror or error}; install it with 'pip install uv' or pass its "
                "path to EnvironmentStore(uv=...)"
            ) from error
        try:
            stdout, stderr = await process.communicate()
        except BaseException:
            # Cancelled (or interrupted): do not leave uv running on its own.
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await asyncio.shield(process.wait())
            raise
        if process.returncode != 0:
            raise EnvironmentBuildError(
                _failure_message(doing, wanted, stderr.decode(errors="replace"))
            )
        return stdout.decode()

    def _uv_executable(self) -> str:
        """The uv to run: the one given, beside the interpreter, the `uv` package's, or PATH's."""
        if self._uv is not None:
            return self._uv
        beside = Path(sys.executable).parent / "uv"
        if beside.is_file() and os.access(beside, os.X_OK):
            return str(beside)
        with contextlib.suppress(ImportError, FileNotFoundError):
            import uv  # an optional helper package: a pip-installable uv binary

            found: str = uv.find_uv_bin()
            return found
        on_path = shutil.which("uv")
        if on_path is None:
            raise EnvironmentBuildError(
                "cannot build an environment: uv is not installed; install it with "
                "'pip install uv' or pass its path to EnvironmentStore(uv=...)"
            )
        return on_path

    def _local_lock(self, key: str) -> asyncio.Lock:
        """The in-process lock for `key`, created on first use."""
        return self._locks.setdefault(key, asyncio.Lock())

    @contextlib.asynccontextmanager
    async def _file_lock(self, path: Path) -> AsyncIterator[None]:
        """Hold an exclusive flock on `path`, waiting without blocking the event loop."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + BUILD_WAIT_SECONDS
            delay = 0.01
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as error:
                    if error.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                # A blocking flock would stall every other coroutine (and could not be
                # cancelled), so poll: builds take seconds, a short wait is cheap.
                if time.monotonic() > deadline:
                    raise EnvironmentBuildError(
                        f"gave up after {BUILD_WAIT_SECONDS} s waiting for another process "
                        f"to finish building the environment locked by {path}"
                    ) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.25)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock


def _write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` so readers see either the old file or the whole new one."""
    fd, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
        os.replace(scratch, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(scratch)
        raise


def _failure_message(doing: str, wanted: list[str], stderr: str) -> str:
    """A message naming the package(s) uv could not handle, the requirements and uv's words."""
    names = {normalize_name(requirement_name(text)): text for text in wanted}
    found = (match for phrase in _CULPRIT_PHRASES for match in phrase.findall(stderr))
    culprits = list(dict.fromkeys(normalize_name(name) for name in found))
    if not culprits:
        # No recognised phrase: blame the requested packages uv's message mentions.
        mentioned = {normalize_name(word) for word in re.findall(r"[A-Za-z0-9._-]+", stderr)}
        culprits = [name for name in names if name in mentioned]
    lines = [line.rstrip() for line in stderr.strip().splitlines() if line.strip()]
    tail = "\n".join(f"  {line}" for line in lines[-MESSAGE_TAIL_LINES:]) or "  (no output)"
    blame = (
        f"the problem is with {', '.join(culprits)}; check the name and version in the "
        "script's imports or its '# requirements:' block"
        if culprits
        else "see uv's message below (a network or index problem?)"
    )
    return f"cannot {doing} the requirements {wanted}: {blame}.\nuv said:\n{tail}"
