"""Running scripts on real pooled ipykernels: output, results, errors, isolation, limits."""

from __future__ import annotations

import asyncio
import os
import stat
import textwrap
import time
from typing import Any

import pytest

from kernels.environments import EnvironmentSpec
from kernels.execution import execute
from kernels.messages import DisplayEvent, RunEvent, RunJob, RunLimits, RunResult, StreamEvent
from kernels.pool import KernelPool
from tests.conftest import wait_for
from tests.portal import Portal


def run(
    portal: Portal, pool: KernelPool, kernel_env: EnvironmentSpec, source: str, **job: Any
) -> tuple[RunResult, list[RunEvent]]:
    events: list[RunEvent] = []
    cancel = job.pop("cancel_after", None)

    async def go() -> RunResult:
        stop = asyncio.Event()
        if cancel is not None:
            asyncio.get_running_loop().call_later(cancel, stop.set)
        async with pool.lease(kernel_env) as lease:
            return await execute(
                lease,
                RunJob(source=textwrap.dedent(source), path=job.pop("path", "script.py"), **job),
                on_event=events.append,
                cancel=stop,
                interrupt_grace_s=1.0,
            )

    return portal.run(go()), events


def stdout_of(events: list[RunEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, StreamEvent) and e.name == "stdout")


def test_result_is_returned_as_json(portal, pool, default_env):
    result, _ = run(
        portal,
        pool,
        default_env,
        "def main(name='x'):\n    return {'hello': name, 'n': [1, 2.5, None]}\n",
        args={"name": "World"},
    )
    assert result.status == "ok"
    assert result.value == {"hello": "World", "n": [1, 2.5, None]}


def test_stdout_and_stderr_stream_in_the_order_written(portal, pool, default_env):
    source = """
        import sys
        def main():
            print("one")
            print("two", file=sys.stderr)
            print("three")
            sys.stderr.write("four\\n")
            return None
    """
    result, events = run(portal, pool, default_env, source)
    assert result.ok
    assert [(e.name, e.text) for e in events if isinstance(e, StreamEvent)] == [
        ("stdout", "one\n"),
        ("stderr", "two\n"),
        ("stdout", "three\n"),
        ("stderr", "four\n"),
    ]


def test_output_streams_while_the_run_is_still_going(portal, pool, default_env):
    # The script blocks until the host has seen its first line: only streaming can finish it.
    source = """
        import sys, time
        def main(flag):
            print("waiting", flush=True)
            deadline = time.time() + 20
            while time.time() < deadline:
                try:
                    open(flag).close()
                    return "seen"
                except FileNotFoundError:
                    time.sleep(0.01)
            return "never seen"
    """

    async def go(tmp_flag: str) -> RunResult:
        def on_event(event: RunEvent) -> None:
            if isinstance(event, StreamEvent) and "waiting" in event.text:
                open(tmp_flag, "w").close()

        async with pool.lease(default_env) as lease:
            return await execute(
                lease,
                RunJob(source=textwrap.dedent(source), args={"flag": tmp_flag}),
                on_event=on_event,
            )

    flag = f"/tmp/gm-test-flag-{os.getpid()}"
    try:
        assert portal.run(go(flag)).value == "seen"
    finally:
        if os.path.exists(flag):
            os.unlink(flag)


def test_output_of_subprocesses_is_captured(portal, pool, default_env):
    result, events = run(
        portal,
        pool,
        default_env,
        "import os\ndef main():\n    os.system('echo from-a-subprocess')\n",
    )
    assert result.ok
    assert "from-a-subprocess\n" in stdout_of(events)


def test_large_fd_output_arrives_whole_and_before_the_result(portal, pool, default_env):
    """Far more than a pipe holds, written straight to fd 1 and 2 (the host reads the
    pipes while the run writes), with a character split across reads."""
    source = """
        import os
        def main():
            os.write(1, ("é" * 400_000).encode())
            os.write(2, b"e" * 100_000)
            return "done"
    """
    result, events = run(portal, pool, default_env, source)
    assert result.value == "done"
    assert stdout_of(events) == "é" * 400_000
    stderr = "".join(e.text for e in events if isinstance(e, StreamEvent) and e.name == "stderr")
    assert stderr == "e" * 100_000


def test_a_background_process_holding_stdout_does_not_delay_the_result(portal, pool, default_env):
    source = """
        import subprocess
        def main():
            subprocess.Popen(["sleep", "3"])  # inherits fd 1 and outlives the run
            return "back"
    """
    before = time.monotonic()
    result, _ = run(portal, pool, default_env, source)
    assert result.value == "back"
    assert time.monotonic() - before < 1.5  # the sleep holds the pipe for 3 s


def test_runs_leave_no_open_descriptors_behind(portal, pool, default_env):
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    def settled() -> bool:  # no kernel starting (an earlier test's replacement, say)
        stats = pool.stats()[default_env.id]
        return stats["starting"] == 0 and stats["leased"] == 0

    run(portal, pool, default_env, "def main():\n    print('warm')\n")
    wait_for(settled, timeout=60, what="a settled pool")
    before = open_fds()
    for _ in range(20):
        result, _ = run(
            portal, pool, default_env, "import os\ndef main():\n    os.write(1, b'x')\n"
        )
        assert result.ok
    wait_for(settled, timeout=60, what="a settled pool")
    assert open_fds() <= before


def test_rich_display_output_is_sent_as_a_mime_bundle(portal, pool, default_env):
    source = """
        from IPython.display import HTML, display
        def main():
            display(HTML("<b>bold</b>"))
            display({"a": 1})
    """
    result, events = run(portal, pool, default_env, source)
    assert result.ok, result.error
    displays = [e for e in events if isinstance(e, DisplayEvent)]
    assert displays[0].data["text/html"] == "<b>bold</b>"
    assert displays[1].data["text/plain"] == "{'a': 1}"


def test_display_from_every_ipython_module_and_the_builtin(portal, pool, default_env):
    """IPython is imported by the run itself (the zygote does not preload it): each of
    its display modules, and the `display` builtin, still send display frames."""
    source = """
        from IPython.core.display_functions import display as core_display
        import IPython.display

        def main():
            core_display({"n": 1})
            IPython.display.display(IPython.display.Markdown("*hi*"))
            display([2])
            return "ok"
    """
    result, events = run(portal, pool, default_env, source)
    assert result.ok, result.error
    displays = [e for e in events if isinstance(e, DisplayEvent)]
    assert [d.data.get("text/plain") for d in displays] == [
        "{'n': 1}",
        "<IPython.core.display.Markdown object>",
        "[2]",
    ]
    assert displays[1].data["text/markdown"] == "*hi*"


def test_traceback_points_at_the_users_own_line(portal, pool, default_env):
    source = "def helper(x):\n    return 1 / x\n\ndef main():\n    return helper(0)\n"
    result, _ = run(portal, pool, default_env, source, path="f/ops/divide.py")
    assert result.status == "error"
    error = result.error
    assert error is not None
    assert (error.kind, error.name, error.message, error.line) == (
        "code",
        "ZeroDivisionError",
        "division by zero",
        2,
    )
    assert 'File "f/ops/divide.py", line 5, in main' in error.traceback
    assert 'File "f/ops/divide.py", line 2, in helper' in error.traceback
    assert "return 1 / x" in error.traceback
    assert "kernels/" not in error.traceback  # none of our frames


def test_value_that_is_not_json_gets_a_clear_error(portal, pool, default_env):
    result, _ = run(portal, pool, default_env, "def main():\n    return {'handle': open}\n")
    assert result.status == "error"
    assert result.error is not None
    assert result.error.name == "ResultError"
    assert "not JSON: a builtin_function_or_method at result['handle']" in result.error.message


def test_common_python_values_are_converted_to_json(portal, pool, default_env):
    source = """
        import datetime, decimal, enum, uuid
        from dataclasses import dataclass
        class Color(enum.Enum):
            RED = "red"
        @dataclass
        class Point:
            x: int
            y: int
        def main():
            return {
                "when": datetime.datetime(2026, 1, 2, 3, 4, 5),
                "day": datetime.date(2026, 1, 2),
                "price": decimal.Decimal("1.50"),
                "color": Color.RED,
                "point": Point(1, 2),
                "tags": {"b", "a"},
                "pair": (1, 2),
                "raw": b"hi",
                "id": uuid.UUID(int=1),
            }
    """
    result, _ = run(portal, pool, default_env, source)
    assert result.value == {
        "when": "2026-01-02T03:04:05",
        "day": "2026-01-02",
        "price": 1.5,
        "color": "red",
        "point": {"x": 1, "y": 2},
        "tags": ["a", "b"],
        "pair": [1, 2],
        "raw": "aGk=",
        "id": "00000000-0000-0000-0000-000000000001",
    }


def test_arguments_become_the_annotated_types(portal, pool, default_env):
    source = """
        import datetime, enum
        from dataclasses import dataclass
        class Reason(str, enum.Enum):
            LATE = "late"
        @dataclass
        class Line:
            sku: str
            qty: int
        def main(when: datetime.datetime, day: datetime.date, data: bytes, reason: Reason, lines: list[Line], maybe: int | None = None):
            return [type(when).__name__, when.hour, day.year, data.decode(), reason is Reason.LATE, [l.qty for l in lines], type(lines[0]).__name__, maybe]
    """
    args = {
        "when": "2026-03-01T10:30:00",
        "day": "2026-03-01",
        "data": "aGk=",
        "reason": "late",
        "lines": [{"sku": "a", "qty": 2}],
    }
    result, _ = run(portal, pool, default_env, source, args=args)
    assert result.value == ["datetime", 10, 2026, "hi", True, [2], "Line", None]


def test_async_main_is_awaited(portal, pool, default_env):
    source = (
        "import asyncio\nasync def main(n: int):\n    await asyncio.sleep(0.01)\n    return n * 2\n"
    )
    result, _ = run(portal, pool, default_env, source, args={"n": 21})
    assert result.value == 42


def test_a_script_that_uses_asyncio_finds_it_imported_already(portal, pool, default_env):
    # Async code needs asyncio, which the lean zygote has not loaded: the full one runs it.
    source = "import sys\nLOADED = 'asyncio' in sys.modules\nasync def main():\n    return LOADED\n"
    result, _ = run(portal, pool, default_env, source)
    assert result.value is True


def test_a_script_that_imports_urllib_request_finds_it_imported_already(portal, pool, default_env):
    source = (
        "import sys\nLOADED = 'urllib.request' in sys.modules\n"
        "from urllib.request import urlopen\ndef main():\n    return LOADED\n"
    )
    result, _ = run(portal, pool, default_env, source)
    assert result.value is True


def test_a_run_process_holds_only_what_the_zygote_preloads(portal, pool, default_env):
    # Every module the lean zygote holds costs each run process page-table copies,
    # faults and tear-down; these came in through kernels.child's own imports once and
    # cost a three-step flow 16 % more CPU. A script that imports only `sys` runs there.
    heavy = ["asyncio", "ssl", "urllib.request", "http.client", "importlib.abc"]
    heavy += ["importlib.resources", "tempfile", "shutil", "argparse", "IPython"]
    source = (
        "import sys\ndef main(names: list):\n    return [n for n in names if n in sys.modules]\n"
    )
    result, _ = run(portal, pool, default_env, source, args={"names": heavy})
    assert result.value == []


def test_runs_are_isolated_from_each_other(portal, pool, default_env):
    # The first run pollutes globals, a stdlib module, the environment and the cwd...
    polluter = """
        import json, os
        LEAK = "first"
        def main():
            global LEAK
            LEAK = "changed"
            json.LEAKED = True
            os.environ["GM_LEAK"] = "yes"
            os.chdir("/")
            import sys
            sys.modules["gm_fake_module"] = object()
            return "polluted"
    """
    checker = """
        import json, os, sys
        def main():
            return {
                "json": hasattr(json, "LEAKED"),
                "env": os.environ.get("GM_LEAK"),
                "module": "gm_fake_module" in sys.modules,
                "globals": "LEAK" in globals(),
            }
    """
    # ...on every kernel of the pool, so the checker cannot dodge it by landing elsewhere.
    for _ in range(3):
        assert run(portal, pool, default_env, polluter)[0].value == "polluted"
    for _ in range(3):
        assert run(portal, pool, default_env, checker)[0].value == {
            "json": False,
            "env": None,
            "module": False,
            "globals": False,
        }


def test_each_run_process_draws_its_own_random_numbers(portal, pool, default_env):
    # Run processes are forked from one zygote that has `random` imported already: each
    # must reseed it, or every run of a kernel would draw the same numbers.
    source = "import random\ndef main():\n    return [random.getrandbits(64), random.random()]\n"
    values = [run(portal, pool, default_env, source)[0].value for _ in range(6)]
    assert len({tuple(v) for v in values}) == 6, values


def test_threads_work_in_a_run_process(portal, pool, default_env):
    source = """
        import threading
        def main():
            seen = []
            workers = [threading.Thread(target=lambda i=i: seen.append(i)) for i in range(4)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            main_thread = threading.main_thread()
            return {
                "seen": sorted(seen),
                "main": main_thread is threading.current_thread(),
                "ident": main_thread.ident == threading.get_ident(),
                "alive": main_thread.is_alive(),
                "count": threading.active_count(),
            }
    """
    result, _ = run(portal, pool, default_env, source)
    assert result.value == {
        "seen": [0, 1, 2, 3],
        "main": True,
        "ident": True,
        "alive": True,
        "count": 1,
    }


def test_environment_variables_and_run_context(portal, pool, default_env):
    from kernels.messages import RunContext

    source = "import os\ndef main():\n    return [os.environ['GRISTMILL_RUN_ID'], os.environ['GRISTMILL_SCRIPT_PATH'], os.environ['API_URL']]\n"
    result, _ = run(
        portal,
        pool,
        default_env,
        source,
        env={"API_URL": "http://x"},
        context=RunContext(run_id="r-1", script_path="f/a/b"),
    )
    assert result.value == ["r-1", "f/a/b", "http://x"]


def test_timeout_interrupts_the_run_and_keeps_the_kernel(portal, pool, default_env):
    replaced = pool.replaced
    source = """
        import time
        def main():
            try:
                time.sleep(30)
            finally:
                print("cleaned up")
    """
    result, events = run(portal, pool, default_env, source, limits=RunLimits(timeout_s=0.3))
    assert result.status == "timeout"
    assert result.error is not None and "timeout of 0.3 s" in result.error.message
    assert "cleaned up\n" in stdout_of(events)  # the interrupt let its finally block run
    assert pool.replaced == replaced


def test_cancel_stops_a_running_script(portal, pool, default_env):
    result, _ = run(
        portal,
        pool,
        default_env,
        "import time\ndef main():\n    time.sleep(30)\n",
        cancel_after=0.3,
    )
    assert result.status == "cancelled"
    assert result.error is not None and result.error.kind == "cancelled"


def test_memory_limit_stops_a_greedy_run(portal, pool, default_env):
    source = "def main():\n    block = bytearray(400 * 1024 * 1024)\n    return len(block)\n"
    result, _ = run(portal, pool, default_env, source, limits=RunLimits(memory_mib=100))
    assert result.status == "error"
    assert result.error is not None and result.error.kind == "limit"
    assert "memory" in result.error.message


def test_cpu_limit_stops_a_busy_run(portal, pool, default_env):
    source = "def main():\n    while True:\n        pass\n"
    result, _ = run(portal, pool, default_env, source, limits=RunLimits(cpu_s=1, timeout_s=30))
    assert result.status == "error"
    assert result.error is not None and result.error.kind == "limit"
    assert "CPU" in result.error.message


def test_exit_from_the_script_is_reported(portal, pool, default_env):
    result, _ = run(portal, pool, default_env, "import sys\ndef main():\n    sys.exit(3)\n")
    assert result.status == "error" and result.error is not None
    assert result.error.message == "the script called exit(3)"


def test_a_run_process_that_dies_is_reported_and_the_kernel_survives(portal, pool, default_env):
    result, _ = run(portal, pool, default_env, "import os\ndef main():\n    os._exit(9)\n")
    assert result.status == "error" and result.error is not None
    assert result.error.name == "RunProcessDied"
    assert run(portal, pool, default_env, "def main():\n    return 1\n")[0].value == 1


def test_bash_script_result_is_its_last_line(portal, pool, default_env):
    source = 'name="$1"\ncount="${2:-2}"\necho "working" >&2\nfor i in $(seq "$count"); do echo "line $i"; done\necho "hello $name"\n'
    result, events = run(
        portal, pool, default_env, source, language="bash", argv=("bob", "3"), path="greet.sh"
    )
    assert result.value == "hello bob"
    assert "line 3\n" in stdout_of(events)


def test_bash_failure_is_an_error_with_its_status(portal, pool, default_env):
    result, _ = run(
        portal, pool, default_env, "echo oops >&2\nexit 4\n", language="bash", path="fail.sh"
    )
    assert result.status == "error" and result.error is not None
    assert result.error.message == "bash exited with status 4: oops"


def test_kernel_files_are_private_and_messages_signed(portal, pool, default_env):
    async def inspect_kernel() -> tuple[int, int, dict[str, Any]]:
        import json

        async with pool.lease(default_env) as lease:
            kernel = lease.kernel
            info = json.loads(kernel.connection_file.read_text())
            return (
                stat.S_IMODE(kernel.connection_file.stat().st_mode),
                stat.S_IMODE(kernel.run_socket.stat().st_mode),
                info,
            )

    conn_mode, socket_mode, info = portal.run(inspect_kernel())
    assert conn_mode == 0o600
    assert socket_mode & 0o077 == 0
    assert info["transport"] == "ipc"
    assert info["signature_scheme"] == "hmac-sha256" and len(info["key"]) >= 32


@pytest.mark.parametrize("size_mib", [1])
def test_large_output_and_result_survive_framing(portal, pool, default_env, size_mib):
    source = f"def main():\n    print('x' * {size_mib * 1024 * 1024})\n    return 'y' * {size_mib * 1024 * 1024}\n"
    result, events = run(portal, pool, default_env, source)
    assert len(result.value) == size_mib * 1024 * 1024
    assert len(stdout_of(events)) == size_mib * 1024 * 1024 + 1
