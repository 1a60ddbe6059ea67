"""``forge keys create|list|revoke``."""

from __future__ import annotations

import datetime as dt
import re
import sys
import time

import click

from forge_kernel.errors import ForgeError

_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_expiry(text: str, now: float | None = None) -> float:
    """``30d``/``12h``/``90m``/``2w`` from now, or an ISO date/datetime (UTC if no zone)."""
    now = time.time() if now is None else now
    match = _DURATION.match(text.strip().lower())
    if match:
        seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        if seconds <= 0:
            raise click.BadParameter(f"{text!r}: a key must not be created already expired")
        return now + seconds
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: use a duration (30d, 12h, 90m, 2w) or an ISO date (2027-01-31)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    if when.timestamp() <= now:
        raise click.BadParameter(f"{text!r} is in the past")
    return when.timestamp()


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "never"
    return dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _store():
    from forge_plugin_auth.keys import KeyStore

    return KeyStore()


@click.group("keys")
def keys_group() -> None:
    """Manage API keys for `forge serve` (stored hashed in FORGE_HOME/auth.sqlite3)."""


@keys_group.command("create")
@click.argument("name")
@click.option("--rpm", type=click.IntRange(min=1), help="Requests per minute allowed.")
@click.option("--tpm", type=click.IntRange(min=1), help="Tokens (prompt + completion) per minute.")
@click.option("--expires", "expires_text", help="Expiry: 30d, 12h, 2w or an ISO date.")
def create_command(name: str, rpm: int | None, tpm: int | None, expires_text: str | None) -> None:
    """Create a key and print it once: it cannot be shown again."""
    expires = parse_expiry(expires_text) if expires_text else None
    try:
        key, record = _store().create(name, rpm=rpm, tpm=tpm, expires=expires)
    except ForgeError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    click.echo(key)
    click.echo(f"created key {record.name!r} (expires {_when(expires)}); store it now, it is "
               "not shown again", err=True)


@keys_group.command("list")
def list_command() -> None:
    """List keys (names, prefixes, limits and status; never the keys)."""
    rows = [("NAME", "KEY", "STATUS", "RPM", "TPM", "CREATED", "EXPIRES")]
    for key in _store().list():
        rows.append((key.name, key.prefix, key.status(), str(key.rpm or "-"),
                     str(key.tpm or "-"), _when(key.created), _when(key.expires)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@keys_group.command("revoke")
@click.argument("name")
def revoke_command(name: str) -> None:
    """Revoke a key by name or id; running servers refuse it from their next request."""
    try:
        key = _store().revoke(name)
    except ForgeError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"revoked {key.name}")
