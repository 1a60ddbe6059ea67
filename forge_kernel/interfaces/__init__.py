"""The interfaces plugins implement, one module per role (docs/plugins/interfaces.md); imports
point "down" and name torch only for type checking."""
