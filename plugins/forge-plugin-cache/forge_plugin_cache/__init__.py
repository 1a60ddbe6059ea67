"""forge-plugin-cache: a response cache for deterministic OpenAI completion requests."""
