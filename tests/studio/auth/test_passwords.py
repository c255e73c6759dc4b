from __future__ import annotations

from argon2 import PasswordHasher

from studio.auth.passwords import hash_password, needs_rehash, verify_password


def test_argon2id_hash_and_verify():
    hashed = hash_password("correct horse")
    assert hashed.startswith("$argon2id$")
    assert hashed != hash_password("correct horse")  # salted
    assert verify_password(hashed, "correct horse")
    assert not verify_password(hashed, "correct horsE")
    assert not needs_rehash(hashed)


def test_bad_hashes_never_raise():
    assert not verify_password("not a hash", "x")
    assert not verify_password("", "x")
    assert needs_rehash("not a hash")


def test_weaker_parameters_need_a_rehash():
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("pw")
    assert verify_password(weak, "pw")
    assert needs_rehash(weak)
