"""The kernel launcher's own arguments, split from ipykernel's without argparse."""

from __future__ import annotations

import pytest

from kernels.kernel_app import _split_args


def test_the_run_socket_is_taken_out_and_the_rest_left_for_ipykernel_in_order():
    argv = ["-f", "/tmp/k.json", "--run-socket", "/tmp/run.sock", "--debug"]
    assert _split_args(argv) == ("/tmp/run.sock", ["-f", "/tmp/k.json", "--debug"])


def test_the_run_socket_may_be_given_with_an_equals_sign():
    assert _split_args(["--run-socket=/tmp/r.sock", "-f", "k.json"]) == (
        "/tmp/r.sock",
        ["-f", "k.json"],
    )


@pytest.mark.parametrize("argv", [[], ["-f", "k.json"], ["--run-socket"], ["--run-socket="]])
def test_a_missing_run_socket_is_refused_by_name(argv):
    with pytest.raises(SystemExit, match="--run-socket PATH is required"):
        _split_args(argv)
