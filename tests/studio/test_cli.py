"""The `gristmill` command line, run as a real process: results, exit codes, messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT

EXAMPLES = ROOT / "examples" / "scripts"
GRISTMILL = [sys.executable, "-m", "studio.cli"]


def gristmill(
    *args: str | Path, data: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GRISTMILL, "--data", str(data), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def script(tmp_path: Path, source: str, name: str = "script.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def test_hello_prints_its_result_as_json(data):
    done = gristmill("run", EXAMPLES / "hello.py", "-a", "name=World", data=data)
    assert (done.returncode, done.stdout) == (0, '"Hello World"\n'), done.stderr


def test_run_without_third_party_imports_never_touches_the_network(data):
    # An unreachable package index and uv in offline mode: any network use would fail.
    offline = {
        "UV_OFFLINE": "1",
        "UV_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
    }
    done = gristmill("run", EXAMPLES / "hello.py", data=data, env=offline)
    assert (done.returncode, done.stdout) == (0, '"Hello world"\n'), done.stderr
    assert not (data / "envs").exists() or not any((data / "envs").iterdir())


def test_values_are_coerced_by_the_schema(tmp_path, data):
    path = script(
        tmp_path,
        """
        def main(count: int, ratio: float, loud: bool, tags: list[str], name: str = "x"):
            return [count + 1, ratio * 2, not loud, tags, name]
        """,
    )
    done = gristmill(
        "run",
        path,
        "-a",
        "count=3",
        "-a",
        "ratio=0.5",
        "-a",
        "loud=yes",
        "-a",
        'tags=["a","b"]',
        "-a",
        "name=007",
        data=data,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [4, 1.0, False, ["a", "b"], "007"]


def test_dataclass_example_runs_with_json_arguments(data):
    order = {
        "order_id": 42,
        "customer": "Ada",
        "lines": [{"sku": "A1", "quantity": 2, "unit_price": 10.0}],
    }
    done = gristmill(
        "run",
        EXAMPLES / "order_summary.py",
        "--args",
        json.dumps({"order": order, "ordered_on": "2026-11-02"}),
        "-a",
        "shipping=express",
        data=data,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "order_id": 42,
        "items": 2,
        "subtotal": 20.0,
        "tax": 4.0,
        "total": 24.0,
        "delivery_by": "2026-11-04",
    }
    assert "order 42 for Ada: 1 lines" in done.stderr


def test_bash_example_runs(data):
    done = gristmill(
        "run", EXAMPLES / "disk_usage.sh", "-a", "directory=/", "-a", "warn_at=101", data=data
    )
    assert (done.returncode, done.stdout) == (0, '"ok"\n'), done.stderr
    assert "file system of / is" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-a", "count=abc"], "argument 'count': expected an integer, got 'abc'"),
        (["-a", "count=1", "-a", "colour=red"], "argument 'colour': unknown"),
        (["-a", "count=1", "-a", "reason=lost"], "argument 'reason': expected one of"),
        ([], "argument 'count': missing"),
        (["-a", "count"], "expected NAME=VALUE"),
        (["--args", "[1, 2]"], "--args: expected a JSON object, got a JSON list"),
        (["--args", "{bad"], "--args: expected a JSON object, got invalid JSON"),
    ],
)
def test_bad_arguments_exit_2_naming_the_field(tmp_path, data, args, message):
    path = script(
        tmp_path,
        'from typing import Literal\ndef main(count: int, reason: Literal["damaged", "late", "other"] = "late"):\n    return count\n',
    )
    done = gristmill("run", path, *args, data=data)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr
    assert done.stdout == ""


def test_unknown_argument_suggests_the_right_name(tmp_path, data):
    path = script(tmp_path, "def main(color: str):\n    return color\n")
    done = gristmill("run", path, "-a", "colour=red", data=data)
    assert done.returncode == 2
    assert "did you mean 'color'?" in done.stderr


@pytest.mark.parametrize(
    ("source", "name", "message"),
    [
        ("def helper():\n    return 1\n", "nomain.py", "nomain.py: no function named `main`"),
        ("def main(:\n    pass\n", "broken.py", "broken.py, line 1"),
        ("x = 1\n", "notes.txt", "cannot run a '.txt' file"),
    ],
)
def test_broken_scripts_exit_2_with_a_clear_message(tmp_path, data, source, name, message):
    done = gristmill("run", script(tmp_path, source, name), data=data)
    assert done.returncode == 2
    assert message in done.stderr


def test_missing_file_exits_2(tmp_path, data):
    done = gristmill("run", tmp_path / "nope.py", data=data)
    assert done.returncode == 2
    assert "nope.py: no such file" in done.stderr


def test_failing_script_exits_1_with_its_traceback(tmp_path, data):
    path = script(tmp_path, "def main(n: int = 0):\n    return 10 / n\n", "divide.py")
    done = gristmill("run", path, data=data)
    assert done.returncode == 1
    assert f'File "{path}", line 2, in main' in done.stderr
    assert "ZeroDivisionError: division by zero" in done.stderr
    assert done.stdout == ""


def test_timeout_stops_the_script_and_exits_1(tmp_path, data):
    path = script(tmp_path, "import time\ndef main():\n    time.sleep(60)\n")
    done = gristmill("run", path, "--timeout", "0.5", data=data)
    assert done.returncode == 1
    assert "took longer than its timeout of 0.5 s" in done.stderr


def test_schema_command_prints_the_input_schema():
    done = subprocess.run(
        [*GRISTMILL, "schema", EXAMPLES / "hello.py"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert json.loads(done.stdout) == {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "description": "Say hello.",
        "properties": {
            "name": {"type": "string", "default": "world", "description": "who to greet"}
        },
        "required": [],
        "additionalProperties": False,
    }


def test_deps_command_prints_one_requirement_a_line(tmp_path):
    path = script(
        tmp_path,
        "import json\nimport yaml\nfrom PIL import Image\nimport requests\n\ndef main():\n    pass\n",
    )
    done = subprocess.run(
        [*GRISTMILL, "deps", path], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert done.stdout == "pillow\npyyaml\nrequests\n"


@pytest.mark.network
def test_script_with_a_third_party_dependency_runs_in_its_own_environment(data):
    done = gristmill(
        "run", EXAMPLES / "config_report.py", "-a", "config=a: 1\nb: [2]\n", data=data, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"sections": ["a", "b"], "size": 2}
    assert len([p for p in (data / "envs").iterdir() if (p / ".gristmill-env.json").exists()]) == 1


@pytest.mark.network
def test_unresolvable_dependency_is_a_clear_error_naming_it(tmp_path, data):
    path = script(
        tmp_path, "# requirements:\n# gristmill-no-such-package-xyz\n\ndef main():\n    return 1\n"
    )
    done = gristmill("run", path, data=data, timeout=300)
    assert done.returncode == 2
    assert "gristmill-no-such-package-xyz" in done.stderr
