"""forge-fixture-lifecycle: records forge_configure / forge_startup / forge_shutdown calls."""
