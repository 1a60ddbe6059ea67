"""forge-plugin-models: decoder-only architectures (Llama/Mistral, Qwen2/Qwen3, Gemma 3) in plain
PyTorch, built from canonical GGUF-named tensors through a forge backend."""
