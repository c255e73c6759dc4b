"""Completions from real pooled kernels: what they offer, and that they neither wait for
nor disturb the runs on the same kernel."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from kernels.completion import CompletionError, CompletionResult, complete, live_kernel
from kernels.environments import EnvironmentSpec
from kernels.execution import execute
from kernels.messages import RunJob
from kernels.pool import KernelPool
from tests.portal import Portal


def ask(portal: Portal, pool: KernelPool, env: EnvironmentSpec, code: str) -> CompletionResult:
    """Completions at the end of `code`. Asked up to three times, as the editor asks again
    at the next keystroke: on a busy machine jedi's first inference can come back empty."""
    for _ in range(3):
        result = portal.run(complete(pool, code, len(code), env))
        if result.matches:
            break
    return result


def test_module_members_after_an_import(portal, pool, default_env):
    code = "import json\njson.du"
    result = ask(portal, pool, default_env, code)
    assert result.matches == ("dump", "dumps")
    # IPython gives up on a match's type when jedi is slow (a busy machine): "" then.
    assert len(result.types) == 2 and set(result.types) <= {"function", ""}
    # The span a match replaces is the partial name "du".
    assert (result.cursor_start, result.cursor_end) == (len(code) - 2, len(code))


def test_names_defined_earlier_in_the_script(portal, pool, default_env):
    code = "def greet_someone(name):\n    return name\n\nrows_total = 3\ngreet_s"
    assert ask(portal, pool, default_env, code).matches == ("greet_someone",)
    code = "rows_total = 3\nprint(rows_t"
    assert "rows_total" in ask(portal, pool, default_env, code).matches


def test_keyword_arguments_of_a_call(portal, pool, default_env):
    code = "def fetch(limit_rows=10, offset=0):\n    pass\n\nfetch(limit_"
    result = ask(portal, pool, default_env, code)
    assert "limit_rows=" in result.matches
    assert result.types[result.matches.index("limit_rows=")] in ("param", "")


def test_magics_are_not_offered_in_a_script(portal, pool, default_env):
    result = ask(portal, pool, default_env, "al")
    assert "all" in result.matches
    assert not [m for m in result.matches if m.startswith("%")]


def test_cursor_counts_code_points_as_jupyter_does(portal, pool, default_env):
    # "é" and the emoji are one code point each (the emoji is two UTF-16 units).
    code = "label = 'é🙂'\nimport json\njson.lo"
    result = portal.run(complete(pool, code, len(code), default_env))
    assert result.matches == ("load", "loads")
    assert result.cursor_start == len(code) - 2


def test_a_busy_kernel_answers_without_waiting_for_its_run(portal, pool, default_env, tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    source = (
        "import pathlib, time\n"
        "def main():\n"
        f"    pathlib.Path({str(started)!r}).touch()\n"
        f"    while not pathlib.Path({str(release)!r}).exists():\n"
        "        time.sleep(0.01)\n"
        "    return 'finished'\n"
    )

    async def go() -> tuple[CompletionResult, bool, str]:
        async with pool.lease(default_env) as lease:
            run = asyncio.create_task(execute(lease, RunJob(source=source)))
            deadline = time.monotonic() + 30
            while not started.exists():
                assert time.monotonic() < deadline, "the run did not start"
                assert not run.done(), run.result()
                await asyncio.sleep(0.01)
            # The kernel is leased and running: the completion goes to it anyway.
            code = "import json\njson.du"
            result = await complete(lease.kernel, code, len(code), default_env, timeout=10)
            still_running = not run.done()
            release.touch()
            ended = await asyncio.wait_for(run, 30)
            return result, still_running, ended.value

    result, still_running, value = portal.run(go())
    assert result.matches == ("dump", "dumps")
    assert still_running
    assert value == "finished"


def test_concurrent_completions_each_get_their_own_reply(portal, pool, default_env):
    codes = ["import json\njson.du", "import os\nos.getcw", "import math\nmath.sqr"] * 4

    async def go() -> list[CompletionResult]:
        return list(await asyncio.gather(*(complete(pool, c, len(c), default_env) for c in codes)))

    results = portal.run(go())
    for code, result in zip(codes, results, strict=True):
        expected = {"du": "dumps", "cw": "getcwd", "qr": "sqrt"}[code[-2:]]
        assert expected in result.matches, (code, result)


def test_bad_cursor_and_oversized_code_are_refused(portal, pool, default_env):
    with pytest.raises(CompletionError, match="cursor position 9 is outside the code"):
        portal.run(complete(pool, "abc", 9, default_env))
    with pytest.raises(CompletionError, match="at most"):
        portal.run(complete(pool, "x" * 300_000, 1, default_env))


def test_an_environment_without_kernels_is_warmed_for_the_next_request(portal, pool):
    other = EnvironmentSpec(
        id="completion-other", python=Path(sys.executable), requirements=(), lock=None
    )
    assert live_kernel(pool, other) is None
    with pytest.raises(CompletionError, match="no kernel of environment completion-other"):
        portal.run(complete(pool, "pri", 3, other))
    # The refusal started one; once it is up, the same request is answered.
    portal.run(pool.wait_warm(other, timeout=120))
    assert ask(portal, pool, other, "pri").matches == ("print",)
