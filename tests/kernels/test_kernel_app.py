"""The kernel launcher's own arguments, split from ipykernel's without argparse."""

from __future__ import annotations

import pytest

from kernels.kernel_app import _split_args


def test_the_run_sockets_are_taken_out_and_the_rest_left_for_ipykernel_in_order():
    argv = ["-f", "/tmp/k.json", "--run-socket", "/tmp/r", "--full-run-socket", "/tmp/a", "-v"]
    assert _split_args(argv) == (
        {"--run-socket": "/tmp/r", "--full-run-socket": "/tmp/a"},
        ["-f", "/tmp/k.json", "-v"],
    )


def test_a_socket_may_be_given_with_an_equals_sign_and_the_async_one_left_out():
    assert _split_args(["--run-socket=/tmp/r.sock", "-f", "k.json"]) == (
        {"--run-socket": "/tmp/r.sock"},
        ["-f", "k.json"],
    )


@pytest.mark.parametrize("argv", [[], ["-f", "k.json"], ["--full-run-socket", "/tmp/a"]])
def test_a_missing_run_socket_is_refused_by_name(argv):
    with pytest.raises(SystemExit, match="--run-socket PATH is required"):
        _split_args(argv)


@pytest.mark.parametrize(
    "argv", [["--run-socket"], ["--run-socket="], ["--run-socket", "/r", "--full-run-socket"]]
)
def test_an_option_without_its_path_is_refused_by_name(argv):
    with pytest.raises(SystemExit, match=r"--(full-)?run-socket needs a socket path"):
        _split_args(argv)
