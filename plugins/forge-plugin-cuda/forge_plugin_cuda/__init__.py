"""forge-plugin-cuda: the ``cuda`` compute backend (bf16 weights, Triton paged attention)."""
