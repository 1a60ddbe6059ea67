"""forge-fixture-broken: a plugin that cannot be imported."""
