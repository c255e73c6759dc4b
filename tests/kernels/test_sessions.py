"""Runner sessions on real kernels: one owner's runs share a run process, and nothing else.

A `RunnerSession` keeps a run process for the owner's next job when the last one left
it reusable. These tests hold it to both halves of that promise: the process really is
reused (same pid), and no job sees what an earlier one left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
from pathlib import Path
from typing import Any

import pytest

from kernels.environments import EnvironmentSpec
from kernels.messages import RunEvent, RunLimits, RunResult, StreamEvent
from kernels.pool import KernelPool
from kernels.runner import RunnerSession, ScriptRunner
from kernels.scripts import Script
from tests.conftest import wait_for
from tests.portal import Portal

PID = "import os\ndef main():\n    return os.getpid()\n"


def script(source: str) -> Script:
    return Script.inline(textwrap.dedent(source), path="step.py")


async def run_in(
    session: RunnerSession,
    source: str,
    events: list[RunEvent] | None = None,
    **options: Any,
) -> RunResult:
    """Run `source` in the session; its events go to `events` when given."""
    args = options.pop("args", {})
    sink = events.append if events is not None else None
    return await session.run(script(source), args, on_event=sink, **options)


def stream(events: list[RunEvent], name: str = "stdout") -> str:
    return "".join(e.text for e in events if isinstance(e, StreamEvent) and e.name == name)


def leased(pool: KernelPool, env: EnvironmentSpec) -> int:
    return pool.stats()[env.id]["leased"]


def ok(result: RunResult) -> Any:
    """The value of a run that must have succeeded."""
    assert result.status == "ok", result.error
    return result.value


# ---------------------------------------------------------------- which process runs a job


def test_sequential_runs_in_a_session_share_one_process(
    portal: Portal, runner: ScriptRunner
) -> None:
    async def go() -> list[Any]:
        async with runner.session() as session:
            return [ok(await run_in(session, PID)) for _ in range(3)]

    pids = portal.run(go())
    assert len(set(pids)) == 1, pids


def test_an_async_job_after_a_plain_one_imports_asyncio_in_the_same_process(
    portal: Portal, runner: ScriptRunner
) -> None:
    # The first job chose the lean zygote's process, which has no asyncio preloaded.
    async def go() -> list[Any]:
        async with runner.session() as session:
            return [
                ok(await run_in(session, PID)),
                ok(await run_in(session, "import os\nasync def main():\n    return os.getpid()\n")),
            ]

    first, second = portal.run(go())
    assert first == second


def test_plain_runs_get_a_new_process_each_time(portal: Portal, runner: ScriptRunner) -> None:
    async def go() -> list[Any]:
        return [ok(await runner.run(script(PID), {})) for _ in range(3)]

    pids = portal.run(go())
    assert len(set(pids)) == 3, pids


def test_two_sessions_never_share_a_process(portal: Portal, runner: ScriptRunner) -> None:
    async def go() -> tuple[list[Any], list[Any]]:
        first: list[Any] = []
        second: list[Any] = []
        async with runner.session() as a, runner.session() as b:
            for _ in range(2):  # interleaved: each session's process waits while the other runs
                first.append(ok(await run_in(a, PID)))
                second.append(ok(await run_in(b, PID)))
        return first, second

    first, second = portal.run(go())
    assert len(set(first)) == 1 and len(set(second)) == 1, (first, second)
    assert not set(first) & set(second)


# ---------------------------------------------------------------- isolation between jobs

BASELINE = """
    import os
    def main():
        return {"pid": os.getpid(), "cwd": os.getcwd()}
"""

DISTURB = """
    import io, os, sys
    LEFT = "module state of job 1"
    def main(where):
        global ALSO_LEFT
        ALSO_LEFT = True
        os.environ["X"] = "from job 1"
        os.chdir(where)
        sys.stdout = io.StringIO()  # swallow the rest of this job's prints
        print("lost on purpose")
        return {"pid": os.getpid(), "cwd": os.getcwd(), "z": os.environ.get("Z")}
"""

INSPECT = """
    import os
    def main():
        print("job 2 speaks")
        return {
            "pid": os.getpid(),
            "globals": sorted(n for n in ("LEFT", "ALSO_LEFT") if n in globals()),
            "x": os.environ.get("X"),
            "y": os.environ.get("Y"),
            "z": os.environ.get("Z"),
            "cwd": os.getcwd(),
        }
"""


def test_no_state_passes_from_one_job_to_the_next(
    portal: Portal, runner: ScriptRunner, tmp_path: Path
) -> None:
    events: list[RunEvent] = []

    async def go() -> tuple[Any, Any, Any]:
        async with runner.session() as session:
            before = ok(await run_in(session, BASELINE))
            disturbed = ok(
                await run_in(session, DISTURB, args={"where": str(tmp_path)}, env={"Z": "z1"})
            )
            after = ok(await run_in(session, INSPECT, events, env={"Y": "given to job 2"}))
            return before, disturbed, after

    before, disturbed, after = portal.run(go())
    assert before["pid"] == disturbed["pid"] == after["pid"]  # else nothing was tested
    assert disturbed["cwd"] == str(tmp_path) and disturbed["z"] == "z1"
    assert after == {
        "pid": before["pid"],
        "globals": [],
        "x": None,
        "y": "given to job 2",
        "z": None,  # job 1's `env` was job 1's only
        "cwd": before["cwd"],
    }
    assert [(e.name, e.text) for e in events if isinstance(e, StreamEvent)] == [
        ("stdout", "job 2 speaks\n")
    ]


CHANGE_Z = """
    import os
    def main():
        seen = os.environ.get("Z")
        os.environ["Z"] = "changed by the script"
        return [os.getpid(), seen]
"""


def test_a_variable_the_last_job_changed_is_given_again_as_the_job_says(
    portal: Portal, runner: ScriptRunner
) -> None:
    # Consecutive steps of a run receive the same variables, and a job whose variables
    # and environment match the last one's changes nothing: here they do not match.
    async def go() -> list[Any]:
        async with runner.session() as session:
            return [ok(await run_in(session, CHANGE_Z, env={"Z": "z1"})) for _ in range(2)]

    (pid1, first), (pid2, second) = portal.run(go())
    assert pid1 == pid2
    assert first == second == "z1"


def test_a_job_that_sets_sys_stdout_to_none_still_returns_its_result(
    portal: Portal, runner: ScriptRunner
) -> None:
    # `sys.stdout = None` is what Python itself does without a console (pythonw).
    async def go() -> tuple[RunResult, RunResult]:
        async with runner.session() as session:
            first = await run_in(
                session,
                "import os, sys\ndef main():\n    sys.stdout = None\n    return os.getpid()\n",
            )
            return first, await run_in(session, PID)

    first, second = portal.run(go())
    assert first.status == "ok", first.error
    assert ok(second) > 0


def test_cpu_used_by_earlier_jobs_does_not_count_against_a_later_jobs_limit(
    portal: Portal, runner: ScriptRunner
) -> None:
    # RLIMIT_CPU counts the whole process's CPU time: a reused process must not hand
    # job 1's seconds to job 2's cpu_s.
    burn = """
        import os, time
        def main(seconds: float):
            end = time.process_time() + seconds
            while time.process_time() < end:
                pass
            return os.getpid()
    """

    async def go() -> tuple[Any, RunResult]:
        async with runner.session() as session:
            first = ok(await run_in(session, burn, args={"seconds": 1.5}))
            second = await run_in(session, burn, args={"seconds": 0.2}, limits=RunLimits(cpu_s=1))
            return first, second

    first_pid, second = portal.run(go())
    assert second.status == "ok", second.error
    assert second.value == first_pid  # else nothing was tested


def test_a_thread_left_running_by_one_job_does_not_write_into_the_next(
    portal: Portal, runner: ScriptRunner
) -> None:
    events: list[RunEvent] = []
    leave_thread = """
        import os, threading, time
        def main():
            threading.Thread(target=lambda: (time.sleep(0.3), print("from job 1's thread")),
                             daemon=True).start()
            return os.getpid()
    """
    wait = "import os, time\ndef main():\n    time.sleep(0.8)\n    return os.getpid()\n"

    async def go() -> tuple[Any, Any]:
        async with runner.session() as session:
            first = ok(await run_in(session, leave_thread))
            return first, ok(await run_in(session, wait, events))

    first, second = portal.run(go())
    # Either the thread's output is kept out of job 2, or the process is not reused.
    assert first != second or "from job 1's thread" not in stream(events), events


def test_a_signal_handler_set_by_one_job_does_not_stop_the_next_from_being_interrupted(
    portal: Portal, runner: ScriptRunner, pool: KernelPool
) -> None:
    ignore = "import os, signal\ndef main():\n    signal.signal(signal.SIGINT, signal.SIG_IGN)\n    return os.getpid()\n"
    slow = "import time\ndef main():\n    time.sleep(10)\n"

    async def go() -> RunResult:
        async with runner.session() as session:
            ok(await run_in(session, ignore))
            return await run_in(session, slow, limits=RunLimits(timeout_s=0.5))

    replaced = pool.replaced
    result = portal.run(go())
    assert result.status == "timeout"
    assert result.error is not None and "kernel was killed" not in result.error.message
    assert pool.replaced == replaced


# ---------------------------------------------------------------- output attribution

NOISY = """
    import os, subprocess, sys
    def main():
        print("print")
        os.write(1, b"fd 1\\n")
        subprocess.run(["echo", "child"], check=True)
        os.write(2, b"fd 2\\n")
        return os.getpid()
"""


def test_all_of_a_jobs_output_arrives_before_its_result_and_none_in_the_next(
    portal: Portal, runner: ScriptRunner
) -> None:
    first: list[RunEvent] = []
    second: list[RunEvent] = []
    order: list[str] = []

    def note(into: list[RunEvent], name: str) -> Any:
        def sink(event: RunEvent) -> None:
            into.append(event)
            order.append(name)

        return sink

    async def go() -> tuple[Any, Any]:
        async with runner.session() as session:
            a = await session.run(script(NOISY), {}, on_event=note(first, "job 1"))
            order.append("result 1")
            b = await session.run(
                script("import os\ndef main():\n    print('two')\n    return os.getpid()\n"),
                {},
                on_event=note(second, "job 2"),
            )
            return ok(a), ok(b)

    pid_1, pid_2 = portal.run(go())
    assert pid_1 == pid_2
    assert stream(first) == "print\nfd 1\nchild\n"
    assert stream(first, "stderr") == "fd 2\n"
    assert stream(second) == "two\n" and stream(second, "stderr") == ""
    assert order.index("result 1") == order.count("job 1")  # nothing of job 1 came later


def test_bash_and_python_jobs_alternate_in_one_process(
    portal: Portal, runner: ScriptRunner
) -> None:
    events: list[RunEvent] = []

    async def go() -> list[RunResult]:
        async with runner.session() as session:
            return [
                await session.run(Script.inline("echo from bash\n", language="bash"), {}),
                await run_in(session, "def main():\n    print('from python')\n", events),
            ]

    results = portal.run(go())
    assert [r.status for r in results] == ["ok", "ok"], [r.error for r in results]
    assert stream(events) == "from python\n"


# ---------------------------------------------------------------- when a process is not reused


@pytest.mark.parametrize(
    "limits", [RunLimits(cpu_s=5), RunLimits(memory_mib=512)], ids=["cpu", "memory"]
)
def test_a_job_with_limits_leaves_its_process_to_exit(
    portal: Portal, runner: ScriptRunner, limits: RunLimits
) -> None:
    async def go() -> list[Any]:
        async with runner.session() as session:
            limited = ok(await run_in(session, PID, limits=limits))
            return [limited, ok(await run_in(session, PID)), ok(await run_in(session, PID))]

    limited, after, again = portal.run(go())
    assert after != limited
    assert again == after  # the new process, without limits, is kept


def test_a_timed_out_job_is_followed_by_a_new_process(portal: Portal, runner: ScriptRunner) -> None:
    async def go() -> tuple[Any, RunResult, Any]:
        async with runner.session() as session:
            before = ok(await run_in(session, PID))
            slow = await run_in(
                session,
                "import time\ndef main():\n    time.sleep(10)\n",
                limits=RunLimits(timeout_s=0.5),
            )
            return before, slow, ok(await run_in(session, PID))

    before, slow, after = portal.run(go())
    assert slow.status == "timeout", slow.error
    assert after != before


def test_a_cancelled_job_is_followed_by_a_new_process(portal: Portal, runner: ScriptRunner) -> None:
    async def go() -> tuple[Any, RunResult, Any]:
        async with runner.session() as session:
            before = ok(await run_in(session, PID))
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(0.3, stop.set)
            slow = await run_in(
                session, "import time\ndef main():\n    time.sleep(10)\n", cancel=stop
            )
            return before, slow, ok(await run_in(session, PID))

    before, slow, after = portal.run(go())
    assert slow.status == "cancelled", slow.error
    assert after != before


def test_a_script_that_raises_leaves_its_process_reusable(
    portal: Portal, runner: ScriptRunner
) -> None:
    async def go() -> tuple[Any, RunResult, Any]:
        async with runner.session() as session:
            before = ok(await run_in(session, PID))
            failed = await run_in(session, "def main():\n    raise ValueError('bad input')\n")
            return before, failed, ok(await run_in(session, PID))

    before, failed, after = portal.run(go())
    assert failed.status == "error" and failed.error is not None
    assert (failed.error.kind, failed.error.name) == ("code", "ValueError")
    assert after == before


@pytest.mark.parametrize(
    "move_fd_1",
    [
        "os.close(1)",
        "os.dup2(os.open(os.devnull, os.O_WRONLY), 1)",
    ],
    ids=["closed", "devnull"],
)
def test_a_job_that_moves_fd_1_ends_and_is_followed_by_a_new_process(
    portal: Portal, runner: ScriptRunner, move_fd_1: str
) -> None:
    source = (
        f"import os\ndef main():\n    print('before')\n    {move_fd_1}\n    return os.getpid()\n"
    )
    events: list[RunEvent] = []
    later: list[RunEvent] = []

    async def go() -> tuple[Any, Any]:
        async with runner.session() as session:
            moved = ok(await run_in(session, source, events))
            after = ok(
                await run_in(
                    session,
                    "import os\ndef main():\n    os.write(1, b'fd\\n')\n    return os.getpid()\n",
                    later,
                )
            )
            return moved, after

    moved, after = portal.run(go())
    assert after != moved  # the drain could not be confirmed: the process exits
    assert stream(events) == "before\n"
    assert stream(later) == "fd\n"


# ---------------------------------------------------------------- concurrency and idle processes


def test_concurrent_runs_in_one_session_get_processes_of_their_own(
    portal: Portal, runner: ScriptRunner
) -> None:
    nap = """
        import os, time
        def main():
            start = time.time()
            time.sleep(0.3)
            return [os.getpid(), start, time.time()]
    """

    async def go() -> list[Any]:
        async with runner.session() as session:
            results = await asyncio.gather(run_in(session, nap), run_in(session, nap))
            return [ok(r) for r in results]

    (pid_a, start_a, end_a), (pid_b, start_b, end_b) = portal.run(go())
    assert pid_a != pid_b
    assert max(start_a, start_b) < min(end_a, end_b), "the two runs did not overlap"


def test_an_idle_process_lets_its_kernel_go_after_idle_s(
    portal: Portal, runner: ScriptRunner, pool: KernelPool, default_env: EnvironmentSpec
) -> None:
    session = runner.session(idle_s=0.2)
    portal.run(session.__aenter__())
    try:

        async def first() -> int:
            ok(await run_in(session, PID))
            return leased(pool, default_env)  # read on the loop, before the expiry can fire

        assert portal.run(first()) == 1
        wait_for(lambda: leased(pool, default_env) == 0, timeout=5, what="the idle process to go")
        # The session still works after its process went: it starts a new one.
        assert ok(portal.run(run_in(session, PID))) > 0
    finally:
        portal.run(session.__aexit__(None, None, None))
    assert leased(pool, default_env) == 0


def test_leaving_the_block_or_release_lets_every_process_go_at_once(
    portal: Portal, runner: ScriptRunner, pool: KernelPool, default_env: EnvironmentSpec
) -> None:
    nap = "import time\ndef main():\n    time.sleep(0.2)\n"

    async def go() -> list[int]:
        seen = []
        async with runner.session(idle_s=60) as session:
            ok(await run_in(session, PID))
            seen.append(leased(pool, default_env))
            await session.release()
            seen.append(leased(pool, default_env))
            await asyncio.gather(run_in(session, nap), run_in(session, nap))
            seen.append(leased(pool, default_env))
        seen.append(leased(pool, default_env))
        return seen

    assert portal.run(go()) == [1, 0, 2, 0]


def test_a_session_cannot_run_after_its_block(portal: Portal, runner: ScriptRunner) -> None:
    async def go() -> None:
        async with runner.session() as session:
            ok(await run_in(session, PID))
        await run_in(session, PID)

    with pytest.raises(RuntimeError, match="session has ended"):
        portal.run(go())


def test_the_hosts_ends_of_a_processs_output_pipes_are_not_inherited(
    portal: Portal, runner: ScriptRunner
) -> None:
    """The read ends the host holds while a process waits are close-on-exec: a program
    the host starts meanwhile (uv, a bash step) keeps none of them open."""
    import fcntl
    import os

    def pipes() -> set[int]:
        found = set()
        for name in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/self/fd/{name}").startswith("pipe:"):
                    found.add(int(name))
        return found

    async def go() -> list[int]:
        before = pipes()
        async with runner.session() as session:
            ok(await run_in(session, PID))  # the process now waits for the next job
            held = pipes() - before
            return [fd for fd in held if not fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC]

    assert portal.run(go()) == []
