"""forge-plugin-openai: the OpenAI-compatible API (``/v1/...``) and ``forge serve``."""
