"""The zygote's warm-up of the run-process code, in a process of its own."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def python(code: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])


def test_warm_up_serves_its_jobs_and_leaves_the_process_as_it_found_it():
    report = python(
        """
        import builtins, json, os, signal, sys
        from kernels import child

        def state():
            return {
                "streams": [id(sys.stdout), id(sys.stderr)],
                "meta_path": [id(f) for f in sys.meta_path],
                "display": hasattr(builtins, "display"),
                "modules": sorted(m for m in ("gristmill", "__gristmill_script__") if m in sys.modules),
                "environ": dict(os.environ),
                "cwd": os.getcwd(),
                "sigint": str(signal.getsignal(signal.SIGINT)),
            }

        before = state()
        served = child.warm_up(4)
        print(json.dumps({"served": served, "same": state() == before}))
        """
    )
    assert report == {"served": 12, "same": True}
