"""forge-plugin-kv-naive: the ``naive`` KV cache (contiguous per-sequence buffers), the reference
implementation of forge's attention semantics."""
