"""GGML block quantization to GGUF (``forge quantize --method ggml``)."""
