"""forge-plugin-safetensors: the ``safetensors`` weight loader (Hugging Face model directories)."""
