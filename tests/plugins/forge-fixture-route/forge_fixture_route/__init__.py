"""Fixture plugin: routes a third party might add, used to prove auth and metrics cover them."""
