"""Raises at import, like a plugin whose dependency is missing or incompatible."""

raise RuntimeError("forge-fixture-broken is broken on purpose")
