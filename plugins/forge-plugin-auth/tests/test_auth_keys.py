"""Key storage, verification and the rate limiter, without a server."""

from __future__ import annotations

import sqlite3
import time

import pytest
from forge_plugin_auth.cli import parse_expiry
from forge_plugin_auth.keys import KeyStore
from forge_plugin_auth.limits import RateLimiter

from forge_kernel.errors import ForgeError


@pytest.fixture()
def store(tmp_path) -> KeyStore:
    return KeyStore(tmp_path / "auth.sqlite3")


def test_key_is_stored_hashed_never_in_clear(store, tmp_path):
    key, record = store.create("alice", rpm=5)
    assert key.startswith(f"fk_{record.key_id}_") and len(key) > 40
    raw = (tmp_path / "auth.sqlite3").read_bytes()
    assert key.encode() not in raw and key.split("_", 2)[2].encode() not in raw
    hashes = sqlite3.connect(tmp_path / "auth.sqlite3").execute(
        "SELECT key_hash FROM api_keys").fetchall()
    assert len(hashes[0][0]) == 64
    assert (tmp_path / "auth.sqlite3").stat().st_mode & 0o077 == 0


def test_verify_right_wrong_revoked_expired(store):
    key, _ = store.create("alice")
    assert store.verify(key).ok and store.verify(key).key.name == "alice"
    assert store.verify(key[:-1] + ("A" if key[-1] != "A" else "B")).reason == "invalid"
    assert store.verify("not-a-key").reason == "invalid"
    assert store.verify("").reason == "invalid"
    store.revoke("alice")
    assert store.verify(key).reason == "revoked"
    old, _ = store.create("bob", expires=time.time() - 1)
    assert store.verify(old).reason == "expired"


def test_names_are_unique_and_revoke_reports_unknown(store):
    store.create("alice")
    with pytest.raises(ForgeError, match="already exists"):
        store.create("alice")
    with pytest.raises(ForgeError, match="does not exist"):
        store.revoke("nobody")
    store.revoke("alice")
    with pytest.raises(ForgeError, match="already revoked"):
        store.revoke("alice")


def test_revoking_every_key_keeps_auth_on(store):
    assert not store.has_keys()
    store.create("alice")
    store.revoke("alice")
    assert store.has_keys()


def test_expiry_parsing():
    now = 1_000_000.0
    assert parse_expiry("30d", now) == now + 30 * 86400
    assert parse_expiry("12h", now) == now + 12 * 3600
    assert parse_expiry("2999-01-01", now) > now
    import click

    with pytest.raises(click.BadParameter, match="duration"):
        parse_expiry("soon", now)
    with pytest.raises(click.BadParameter, match="past"):
        parse_expiry("2001-01-01", time.time())


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_requests_per_minute_limit_and_recovery():
    clock = FakeClock()
    limiter = RateLimiter(clock)
    assert all(limiter.admit("k", rpm=3, tpm=None).allowed for _ in range(3))
    refused = limiter.admit("k", rpm=3, tpm=None)
    assert not refused.allowed and 59 <= refused.retry_after <= 60
    clock.now += 30
    assert not limiter.admit("k", rpm=3, tpm=None).allowed
    clock.now += 30.5
    assert limiter.admit("k", rpm=3, tpm=None).allowed
    assert limiter.admit("other", rpm=3, tpm=None).allowed  # limits are per key


def test_tokens_per_minute_limit_and_recovery():
    clock = FakeClock()
    limiter = RateLimiter(clock)
    assert limiter.admit("k", rpm=None, tpm=100).allowed
    limiter.add_tokens("k", 60)
    clock.now += 10
    limiter.add_tokens("k", 50)
    refused = limiter.admit("k", rpm=None, tpm=100)
    assert not refused.allowed and refused.retry_after == pytest.approx(50)
    clock.now += 50.1  # the first 60 tokens leave the window
    assert limiter.admit("k", rpm=None, tpm=100).allowed
