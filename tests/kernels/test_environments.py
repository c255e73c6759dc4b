"""Environments: the offline default, locking and building once, readable failures.

Offline tests drive the store with a fake `uv` (a small script that logs its calls);
the `network` tests build real environments from PyPI with the real uv, few of them,
because each build costs seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kernels.environments import MARKER_NAME, EnvironmentSpec, EnvironmentStore
from kernels.errors import EnvironmentBuildError

FAKE_UV = f"""\
#!{sys.executable}
# Stands in for uv: logs each call, prints a fixed lock, makes a skeleton venv.
import os, pathlib, sys
args = sys.argv[1:]
with open(os.environ["FAKE_UV_LOG"], "a") as log:
    log.write(" ".join(args[:2]) + "\\n")
if args[:2] == ["pip", "compile"]:
    print("fakepkg==1.0\\nipykernel==6.29.5")
elif args[0] == "venv":
    bin_dir = pathlib.Path(args[-1]) / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(sys.executable)
elif args[:2] == ["pip", "install"]:
    if os.environ.get("FAKE_UV_FAIL"):
        print("error: Failed to download `fakepkg==1.0`", file=sys.stderr)
        print("  Caused by: HTTP status server error (503)", file=sys.stderr)
        sys.exit(2)
"""


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def forbid_subprocesses(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"no subprocess expected, got {args}")

    monkeypatch.setattr(asyncio, "create_subprocess_exec", refuse)


@pytest.fixture
def fake_uv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake uv executable; its calls are logged to the returned file."""
    script = tmp_path / "uv"
    script.write_text(FAKE_UV)
    script.chmod(0o755)
    log = tmp_path / "uv.log"
    log.touch()
    monkeypatch.setenv("FAKE_UV_LOG", str(log))
    return log


def uv_calls(log: Path) -> list[str]:
    return log.read_text().splitlines()


# -- offline ------------------------------------------------------------------------


def test_default_is_the_running_interpreter(tmp_path: Path) -> None:
    store = EnvironmentStore(tmp_path / "envs")
    assert store.default() == EnvironmentSpec("default", Path(sys.executable), (), None)


def test_no_requirements_means_default_without_subprocess_or_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_subprocesses(monkeypatch)
    root = tmp_path / "envs"
    store = EnvironmentStore(root, uv="/nonexistent/uv", index_url="http://127.0.0.1:9/simple")
    assert run(store.resolve([])) == store.default()
    assert run(store.resolve(())) == store.default()
    assert not root.exists()


def test_invalid_requirement_is_refused_before_uv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_subprocesses(monkeypatch)
    store = EnvironmentStore(tmp_path)
    with pytest.raises(EnvironmentBuildError, match="--index-url"):
        run(store.resolve(["--index-url=http://evil.example/simple"]))


def test_missing_uv_is_a_build_error(tmp_path: Path) -> None:
    store = EnvironmentStore(tmp_path, uv=str(tmp_path / "no-uv-here"))
    with pytest.raises(EnvironmentBuildError, match=r"cannot run uv .*no-uv-here"):
        run(store.resolve(["six"]))


def test_build_locks_once_and_renames_into_place(tmp_path: Path, fake_uv: Path) -> None:
    root = tmp_path / "envs"
    store = EnvironmentStore(root, uv=str(tmp_path / "uv"))
    spec = run(store.resolve(["fakepkg", "FakePkg"]))

    assert spec.requirements == ("fakepkg",)
    assert spec.lock is not None and "fakepkg==1.0" in spec.lock
    assert spec.id == hashlib.sha256(spec.lock.encode()).hexdigest()[:16]
    assert spec.python == root / spec.id / "bin" / "python"
    marker = json.loads((root / spec.id / MARKER_NAME).read_text())
    assert marker["requirements"] == ["fakepkg"]
    assert marker["lock"] == spec.lock
    assert uv_calls(fake_uv) == ["pip compile", "venv --python", "pip install"]
    assert not list(root.glob(".build-*"))

    # Cached: no uv at all, from this store or from a fresh one on the same root.
    assert run(store.resolve(["fakepkg"])) == spec
    assert run(EnvironmentStore(root, uv=str(tmp_path / "uv")).resolve(["fakepkg"])) == spec
    assert len(uv_calls(fake_uv)) == 3


def test_concurrent_resolves_build_once(tmp_path: Path, fake_uv: Path) -> None:
    store = EnvironmentStore(tmp_path / "envs", uv=str(tmp_path / "uv"))

    async def resolve_many() -> list[EnvironmentSpec]:
        return await asyncio.gather(*(store.resolve(["fakepkg"]) for _ in range(5)))

    specs = run(resolve_many())
    assert len(set(specs)) == 1
    assert uv_calls(fake_uv) == ["pip compile", "venv --python", "pip install"]


def test_failed_install_leaves_nothing_half_built(
    tmp_path: Path, fake_uv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "envs"
    store = EnvironmentStore(root, uv=str(tmp_path / "uv"))
    monkeypatch.setenv("FAKE_UV_FAIL", "1")
    with pytest.raises(EnvironmentBuildError) as caught:
        run(store.resolve(["fakepkg"]))
    message = str(caught.value)
    assert "cannot install the requirements ['fakepkg']" in message
    assert "the problem is with fakepkg" in message
    assert "HTTP status server error (503)" in message
    assert [p.name for p in root.iterdir() if not p.name.endswith(".lock")] == ["locks"]

    # The lock is kept, so the retry goes straight to building.
    monkeypatch.delenv("FAKE_UV_FAIL")
    spec = run(store.resolve(["fakepkg"]))
    assert (root / spec.id / MARKER_NAME).is_file()
    assert uv_calls(fake_uv)[-2:] == ["venv --python", "pip install"]
    assert uv_calls(fake_uv).count("pip compile") == 1


def test_debris_of_a_killed_build_is_cleared(tmp_path: Path, fake_uv: Path) -> None:
    root = tmp_path / "envs"
    store = EnvironmentStore(root, uv=str(tmp_path / "uv"))
    spec = run(store.resolve(["fakepkg"]))
    # Simulate a build killed half-way: staging left behind, no finished environment.
    (root / spec.id / MARKER_NAME).unlink()
    (root / f".build-{spec.id}-dead").mkdir()
    assert run(store.resolve(["fakepkg"])) == spec
    assert (root / spec.id / MARKER_NAME).is_file()
    assert not list(root.glob(".build-*"))


def test_index_url_is_passed_to_uv_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, ...]] = []

    async def record(*args: str, **kwargs: object) -> None:
        seen.append(args)
        raise OSError("stop here")

    monkeypatch.setattr(asyncio, "create_subprocess_exec", record)
    store = EnvironmentStore(tmp_path, uv="uv", index_url="http://127.0.0.1:9/simple")
    with pytest.raises(EnvironmentBuildError):
        run(store.resolve(["six"]))
    (command,) = seen
    assert command[:3] == ("uv", "pip", "compile")
    assert command[command.index("--index-url") + 1] == "http://127.0.0.1:9/simple"
    assert command[command.index("--python-version") + 1] == "{}.{}".format(*sys.version_info[:2])
    source = Path(command[3])
    assert not source.exists()  # the temporary .in file is gone


# -- network: real uv, real PyPI ----------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, EnvironmentSpec]]:
    """One real environment shared by this module's network tests."""
    root = tmp_path_factory.mktemp("envs")
    started = time.perf_counter()
    spec = run(EnvironmentStore(root).resolve(["six==1.16.0"]))
    print(f"first build of six==1.16.0: {time.perf_counter() - started:.2f} s")
    yield root, spec


@pytest.mark.network
def test_real_environment_runs_its_packages_and_a_kernel(
    built: tuple[Path, EnvironmentSpec],
) -> None:
    root, spec = built
    assert spec.requirements == ("six==1.16.0",)
    assert spec.python.parent.parent == root / spec.id
    code = "import six, ipykernel, sys; print(six.__version__, sys.prefix)"
    out = subprocess.run([str(spec.python), "-c", code], capture_output=True, text=True, check=True)
    version, prefix = out.stdout.split()
    assert version == "1.16.0"
    assert Path(prefix) == root / spec.id
    assert not list(root.glob(".build-*"))


@pytest.mark.network
def test_real_environment_is_reused_without_uv(
    built: tuple[Path, EnvironmentSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, spec = built
    forbid_subprocesses(monkeypatch)
    started = time.perf_counter()
    assert run(EnvironmentStore(root).resolve(["six==1.16.0"])) == spec
    print(f"cached resolve: {(time.perf_counter() - started) * 1000:.1f} ms")


@pytest.mark.network
def test_unknown_package_names_it(tmp_path: Path) -> None:
    store = EnvironmentStore(tmp_path)
    with pytest.raises(EnvironmentBuildError) as caught:
        run(store.resolve(["gristmill-no-such-package-xyz", "six"]))
    message = str(caught.value)
    assert "the problem is with gristmill-no-such-package-xyz;" in message
    assert "['gristmill-no-such-package-xyz', 'six']" in message
    assert re.search(r"not\s+found\s+in\s+the\s+package\s+registry", message)
    assert not list((tmp_path / "locks").glob("*.txt"))


@pytest.mark.network
def test_two_processes_build_once(built: tuple[Path, EnvironmentSpec], tmp_path: Path) -> None:
    # A fresh root, so both processes race to build; uv's cache keeps it to seconds.
    root = tmp_path / "envs"
    script = textwrap.dedent(
        f"""
        import asyncio, json, sys
        from pathlib import Path
        from kernels.environments import EnvironmentStore, MARKER_NAME
        spec = asyncio.run(EnvironmentStore(Path({str(root)!r})).resolve(["six==1.16.0"]))
        marker = json.loads((Path({str(root)!r}) / spec.id / MARKER_NAME).read_text())
        print(spec.id, marker["built_at"])
        """
    )
    repo = Path(__file__).resolve().parents[2]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script], cwd=repo, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=240)[0] for process in processes]
    assert all(process.returncode == 0 for process in processes)
    assert outputs[0] == outputs[1]  # same id, and the same (single) build
    assert outputs[0].split()[0] == built[1].id
