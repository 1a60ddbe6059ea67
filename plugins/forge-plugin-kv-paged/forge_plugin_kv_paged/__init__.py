"""forge-plugin-kv-paged: the ``paged`` KV cache."""
