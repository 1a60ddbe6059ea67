"""forge-plugin-run: the ``forge run`` command (one-shot generation and interactive chat)."""
