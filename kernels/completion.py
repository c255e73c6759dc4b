"""Code completions from a live kernel: Jupyter's `complete_request` on a pooled kernel.

    result = await complete(pool, "import json\\njson.du", 19, env)
    result.matches  # ['dump', 'dumps']

Why this needs no lease. A pooled kernel is two processes (see `kernel_app.py`): the
ipykernel that answers the Jupyter channels, and the zygote, forked from it *before*
ipykernel started, that forks one process per run and serves the run socket. Runs
never touch the ipykernel's shell channel, and nothing the ipykernel process does
(jedi's caches, modules it imports to introspect them) can reach a run: runs are
forked from the zygote, which does not share memory with the ipykernel after the
fork. A `complete_request` executes no user code; IPython answers it from the source
text (jedi) and the ipykernel's own namespace, which runs never fill. So a completion
may go to any live kernel of the environment, idle or in the middle of a run, and it
must not take a lease: a lease would make completions wait behind long runs and make
runs wait behind completions.

Each call connects its own ZeroMQ socket to the kernel's shell channel, next to the
pool's client, rather than borrowing the pool's: replies on a shared socket go to
whoever reads first, and the pool's health check discards replies it does not expect.
The kernel routes each reply back to the socket that asked, so the two never mix.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq.asyncio
from jupyter_client.asynchronous.client import AsyncKernelClient

from kernels.environments import EnvironmentSpec
from kernels.errors import KernelError
from kernels.kernel import PooledKernel
from kernels.pool import KernelPool
from kernels.requirements import canonical_requirements

DEFAULT_TIMEOUT_S = 5.0
# A script of this many characters is plenty; beyond it a request is a mistake or abuse
# (the kernel would spend its time parsing it while other editors wait).
MAX_CODE_CHARS = 200_000
MAX_MATCHES = 200


class CompletionError(KernelError):
    """A completion could not be asked for: bad input, no live kernel, no answer in time."""


@dataclass(frozen=True)
class CompletionResult:
    """What the kernel offers at the cursor.

    `cursor_start`..`cursor_end` is the span of the code (in code points, like
    `cursor_pos`) that a chosen match replaces. `types` gives, per match, the kind
    IPython reports ("function", "module", "keyword", "param", ...), "" when unknown.
    """

    matches: tuple[str, ...]
    cursor_start: int
    cursor_end: int
    types: tuple[str, ...] = ()
    kernel_id: str = ""
    duration_ms: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "matches": list(self.matches),
            "cursor_start": self.cursor_start,
            "cursor_end": self.cursor_end,
            "types": list(self.types),
            "kernel_id": self.kernel_id,
            "duration_ms": self.duration_ms,
        }


def live_kernel(pool: KernelPool, env: EnvironmentSpec) -> PooledKernel | None:
    """A live kernel of `env` in `pool`, idle or running something; None when it has none.

    Takes no lease (see the module docstring); the most recently used idle kernel
    first (its pages are warm), then busy ones.
    """
    candidates = pool.live_kernels(env)
    return next((k for k in candidates if k.connection_file.exists()), None)


def warm_environment(pool: KernelPool, requirements: Sequence[str]) -> EnvironmentSpec | None:
    """The environment of `requirements` if the pool already keeps kernels for it.

    Completions use it without resolving or building anything.
    """
    wanted = tuple(canonical_requirements(requirements))
    return next((env for env in pool.environments() if env.requirements == wanted), None)


async def complete(
    target: KernelPool | PooledKernel,
    code: str,
    cursor_pos: int,
    env: EnvironmentSpec,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> CompletionResult:
    """Ask a live kernel of `env` what may be typed at `cursor_pos` in `code`.

    `target` is a pool (any live kernel of `env` answers; when there is none, the pool
    is asked to warm one and `CompletionError` says to try again) or one kernel.
    `cursor_pos` counts code points, as Jupyter does (not UTF-16 units).
    Raises `CompletionError` for bad input, no kernel, or no reply within `timeout`.
    """
    if len(code) > MAX_CODE_CHARS:
        raise CompletionError(
            f"the code is {len(code)} characters long; completions take at most {MAX_CODE_CHARS}"
        )
    if not 0 <= cursor_pos <= len(code):
        raise CompletionError(
            f"cursor position {cursor_pos} is outside the code (0 to {len(code)} characters)"
        )
    if isinstance(target, KernelPool):
        kernel = live_kernel(target, env)
        if kernel is None:
            target.warm(env)
            raise CompletionError(
                f"no kernel of environment {env.id} is running yet; one is starting, "
                "try again in a few seconds"
            )
    else:
        kernel = target
    started = time.perf_counter()
    async with _shell_client(kernel.connection_file) as client:
        reply = await _request(client, code, cursor_pos, timeout, kernel.id)
    return _result(reply, kernel.id, (time.perf_counter() - started) * 1000)


@contextlib.asynccontextmanager
async def _shell_client(connection_file: Path) -> AsyncIterator[AsyncKernelClient]:
    """A client on the kernel's shell channel only, closed (with its context) after."""
    context = zmq.asyncio.Context()
    client = AsyncKernelClient(context=context)
    try:
        client.load_connection_file(str(connection_file))
    except (OSError, ValueError) as exc:
        context.destroy(linger=0)
        raise CompletionError(
            f"cannot read the kernel's connection file {connection_file.name}: {exc}"
        ) from None
    client.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
    try:
        yield client
    finally:
        client.stop_channels()
        context.destroy(linger=0)


async def _request(
    client: AsyncKernelClient, code: str, cursor_pos: int, timeout: float, kernel_id: str
) -> dict[str, Any]:
    msg_id = client.complete(code, cursor_pos)
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            reply: dict[str, Any] = await client.get_shell_msg(timeout=remaining)
        except Exception:  # queue.Empty on timeout
            break
        if reply.get("parent_header", {}).get("msg_id") == msg_id:
            return reply
    raise CompletionError(
        f"kernel {kernel_id} did not answer the completion request within {timeout:g} s"
    )


def _result(reply: dict[str, Any], kernel_id: str, duration_ms: float) -> CompletionResult:
    content = reply.get("content") or {}
    if content.get("status") != "ok":
        raise CompletionError(
            f"kernel {kernel_id} could not complete: "
            f"{content.get('ename', 'error')}: {content.get('evalue', '')}".rstrip(": ")
        )
    # IPython magics (`%alias`) are not Python: a script cannot use them.
    matches = [str(m) for m in content.get("matches") or [] if not str(m).startswith("%")]
    matches = matches[:MAX_MATCHES]
    metadata = content.get("metadata") or {}
    # IPython's experimental completions carry each match's type; they are listed in
    # the same order as `matches` but may also cover matches with another span.
    kinds = {
        str(c.get("text")): str(c.get("type") or "").replace("<unknown>", "")
        for c in metadata.get("_jupyter_types_experimental") or []
        if isinstance(c, dict)
    }
    return CompletionResult(
        matches=tuple(matches),
        cursor_start=int(content.get("cursor_start", 0)),
        cursor_end=int(content.get("cursor_end", 0)),
        types=tuple(kinds.get(m, "") for m in matches),
        kernel_id=kernel_id,
        duration_ms=round(duration_ms, 2),
    )
