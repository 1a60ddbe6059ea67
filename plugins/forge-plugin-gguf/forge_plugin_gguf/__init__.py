"""forge-plugin-gguf: the ``gguf`` weight loader (llama.cpp's model file format)."""
