"""forge-fixture-hello: the smallest useful forge plugin (see docs/plugins/tutorial.md)."""
