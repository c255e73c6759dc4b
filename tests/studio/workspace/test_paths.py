from __future__ import annotations

import pytest

from studio.workspace import Invalid, check_path, owner_of
from studio.workspace.paths import check_name, under


@pytest.mark.parametrize(
    "path",
    ["u/alice/refund", "f/support/refund", "f/support/billing/daily.v2", "u/a_b/x-y", "f/0/_"],
)
def test_workspace_paths_are_accepted_unchanged(path):
    assert check_path(path) == path


@pytest.mark.parametrize(
    "path",
    [
        "x/y",
        "u/alice",
        "g/ops/x",
        "",
        "/u/alice/x",
        "u/alice/x/",
        "u/Alice/x",
        "u/alice/../etc",
        "u/alice/.hidden",
        "f/support/has space",
        "f/support/-dash",
    ],
)
def test_bad_paths_are_refused_naming_the_value_and_the_expected_form(path):
    with pytest.raises(Invalid) as caught:
        check_path(path)
    message = str(caught.value)
    assert repr(path) in message
    assert "expected u/<user>/<name> or f/<folder>/<name>" in message
    assert caught.value.field == "path"


def test_the_message_for_a_two_segment_path_is_the_documented_one():
    with pytest.raises(
        Invalid,
        match=r"path 'x/y' is not a workspace path; expected u/<user>/<name> or f/<folder>/<name>",
    ):
        check_path("x/y")


def test_owner_of_names_the_tree_and_its_owner():
    assert owner_of("u/alice/a/b") == ("u", "alice")
    assert owner_of("f/support/refund") == ("f", "support")
    with pytest.raises(Invalid):
        owner_of("f/support")


def test_names_are_single_segments():
    assert check_name("ops", "group name") == "ops"
    with pytest.raises(Invalid, match="group name 'a/b' is not valid"):
        check_name("a/b", "group name")


def test_under_compares_whole_segments():
    assert under("f/support/x", "f/support")
    assert under("f/support/x", "f/support/")
    assert under("f/support", "f/support")
    assert not under("f/supportx/y", "f/support")
