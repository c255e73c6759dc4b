"""Run tokens: signed, expiring, bound to one key; the key file is private."""

from __future__ import annotations

import stat

from studio.job_tokens import LIFETIME_S, RunClaims, RunTokens


def test_a_minted_token_checks_until_it_expires(tmp_path) -> None:
    tokens = RunTokens.open(tmp_path / "keys" / "runs.key")
    token = tokens.mint("r1", "alice", 1000.0, "f/team/job")
    assert tokens.check(token, 1000.0) == RunClaims(
        "r1", "alice", 1000.0 + LIFETIME_S, "f/team/job"
    )
    assert tokens.check(token, 1000.0 + LIFETIME_S + 1) is None
    assert stat.S_IMODE((tmp_path / "keys" / "runs.key").stat().st_mode) == 0o600
    # the same key file on reopening (a restarted server honours running runs' tokens)
    assert RunTokens.open(tmp_path / "keys" / "runs.key").check(token, 1000.0) is not None


def test_tampered_foreign_and_malformed_tokens_are_refused(tmp_path) -> None:
    tokens = RunTokens.open(tmp_path / "a.key")
    other = RunTokens.open(tmp_path / "b.key")
    token = tokens.mint("r1", "alice", 1000.0)
    body, _, signature = token.partition(".")
    forged_body = tokens.mint("r1", "admin", 1000.0).partition(".")[0]
    for bad in (
        other.mint("r1", "alice", 1000.0),  # another server's key
        f"{forged_body}.{signature}",  # someone else's claims under this signature
        body + "." + signature[:-2] + "AA",
        body,
        "gm_not_a_run_token",
        "gmrun_%%%.xyz",
    ):
        assert tokens.check(bad, 1000.0) is None, bad
