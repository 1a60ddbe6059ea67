"""API keys stored hashed in SQLite under ``FORGE_HOME``.

A key looks like ``fk_<id>_<secret>``: the 8-hex-digit ``id`` finds the row, the SHA-256 of the
whole key is compared in constant time with the stored hash. The key itself is never stored
and is shown once, at creation. SHA-256 (not a slow password hash) is right here because keys
carry 256 bits of randomness: there is nothing to brute-force, and every request checks a key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from forge_kernel.errors import ForgeError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id     TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    key_hash   TEXT NOT NULL,
    created    REAL NOT NULL,
    expires    REAL,
    revoked    REAL,
    rpm        INTEGER,
    tpm        INTEGER
)
"""
_KEY_PATTERN = re.compile(r"^fk_([0-9a-f]{8})_([A-Za-z0-9_-]{20,})$")
_DUMMY_HASH = hashlib.sha256(b"forge-no-such-key").hexdigest()


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def hashes_equal(a: str, b: str) -> bool:
    """Constant-time comparison of two hex digests."""
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(slots=True, frozen=True)
class ApiKey:
    """A stored key's record (never the key itself)."""

    key_id: str
    name: str
    created: float
    expires: float | None
    revoked: float | None
    rpm: int | None
    tpm: int | None

    @property
    def prefix(self) -> str:
        """Displayable start of the key, enough to recognize it."""
        return f"fk_{self.key_id}_…"

    def status(self, now: float | None = None) -> str:
        if self.revoked is not None:
            return "revoked"
        if self.expires is not None and (now or time.time()) >= self.expires:
            return "expired"
        return "active"


@dataclass(slots=True, frozen=True)
class Verdict:
    """Outcome of checking a presented key: ``key`` is set only when ``ok``."""

    ok: bool
    reason: str
    key: ApiKey | None = None


def default_db_path() -> Path:
    home = Path(os.environ.get("FORGE_HOME") or Path.home() / ".forge").expanduser()
    return home / "auth.sqlite3"


class KeyStore:
    """CRUD and verification of API keys. Safe to share between threads."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        if fresh:
            os.chmod(self.path, 0o600)  # hashes only, but nobody else needs to read them
        with self._lock:
            self._db.execute(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def create(self, name: str, rpm: int | None = None, tpm: int | None = None,
               expires: float | None = None) -> tuple[str, ApiKey]:
        """Create a key; returns ``(secret_key, record)``. The secret is not recoverable later."""
        if not name or len(name) > 64:
            raise ForgeError("key name must be 1-64 characters")
        key_id = secrets.token_hex(4)
        key = f"fk_{key_id}_{secrets.token_urlsafe(32)}"
        now = time.time()
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, NULL, ?, ?)",
                    (key_id, name, _hash(key), now, expires, rpm, tpm),
                )
            except sqlite3.IntegrityError:
                raise ForgeError(f"a key named {name!r} already exists") from None
        return key, ApiKey(key_id, name, now, expires, None, rpm, tpm)

    def list(self) -> list[ApiKey]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key_id, name, created, expires, revoked, rpm, tpm FROM api_keys "
                "ORDER BY created"
            ).fetchall()
        return [ApiKey(*row) for row in rows]

    def revoke(self, name_or_id: str) -> ApiKey:
        """Revoke by name or key id (a name wins: a key named like another key's id never
        revokes both); takes effect on running servers at their next request."""
        keys = self.list()
        target = (next((k for k in keys if k.name == name_or_id), None)
                  or next((k for k in keys if k.key_id == name_or_id), None))
        if target is None:
            raise ForgeError(f"key {name_or_id!r} does not exist")
        with self._lock:
            cursor = self._db.execute(
                "UPDATE api_keys SET revoked = ? WHERE key_id = ? AND revoked IS NULL",
                (time.time(), target.key_id),
            )
        if cursor.rowcount == 0:
            raise ForgeError(f"key {name_or_id!r} is already revoked")
        return next(k for k in self.list() if k.key_id == target.key_id)

    def has_keys(self) -> bool:
        """True once any key was ever created: revoking them all must not open the server."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM api_keys LIMIT 1").fetchone() is not None

    def verify(self, presented: str) -> Verdict:
        """Check a presented key in constant time with respect to the stored hash."""
        match = _KEY_PATTERN.match(presented)
        key_id = match.group(1) if match else ""
        with self._lock:
            row = self._db.execute(
                "SELECT key_id, name, created, expires, revoked, rpm, tpm, key_hash "
                "FROM api_keys WHERE key_id = ?", (key_id,),
            ).fetchone()
        stored = row[7] if row else _DUMMY_HASH
        if not hashes_equal(_hash(presented), stored) or row is None:
            return Verdict(False, "invalid")
        key = ApiKey(*row[:7])
        status = key.status()
        return Verdict(status == "active", status, key)
