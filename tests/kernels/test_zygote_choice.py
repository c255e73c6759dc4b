"""Which of a kernel's two zygotes runs a job: the lean one only when it has loaded all
that the job imports (execution.fits_lean, requirements.run_imports)."""

from __future__ import annotations

import pytest

from kernels.execution import fits_lean
from kernels.messages import RunJob
from kernels.requirements import run_imports

LOADED = frozenset({"sys", "os", "os.path", "json", "collections", "urllib", "urllib.parse"})


def test_run_imports_lists_every_module_imported_once_and_asyncio_for_async_code():
    source = (
        "import os, json\nfrom collections import OrderedDict\nimport os\nfrom . import near\n"
        "def main():\n    import urllib.request\n    async def inner():\n        pass\n"
    )
    assert run_imports(source) == ("os", "json", "collections", "urllib.request", "asyncio")


def test_run_imports_of_unreadable_source_is_unknown():
    assert run_imports("def main(:\n") is None


@pytest.mark.parametrize(
    ("source", "lean"),
    [
        ("def main():\n    return 1\n", True),
        ("import os.path, json\ndef main():\n    return 1\n", True),
        ("from collections import OrderedDict\ndef main():\n    return 1\n", True),
        ("from urllib import parse\ndef main():\n    return 1\n", True),
        ("import urllib.request\ndef main():\n    return 1\n", False),
        ("from urllib.request import urlopen\ndef main():\n    return 1\n", False),
        ("import numpy\ndef main():\n    return 1\n", False),
        ("async def main():\n    return 1\n", False),
        ("def main(:\n", False),
    ],
)
def test_a_job_goes_to_the_lean_zygote_only_if_it_has_all_the_job_imports(source, lean):
    assert fits_lean(RunJob(source=source), LOADED) is lean


def test_imports_known_in_advance_are_used_and_bash_always_fits():
    job = RunJob(source="import numpy\n", imports=("json",))
    assert fits_lean(job, LOADED)
    assert fits_lean(RunJob(source="curl http://x\n", language="bash"), LOADED)


def test_nothing_fits_a_zygote_whose_modules_are_not_known_yet():
    assert not fits_lean(RunJob(source="def main():\n    return 1\n"), frozenset())
