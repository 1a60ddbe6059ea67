"""forge-plugin-auth: API keys with rate limits for every forge endpoint (HTTP and WebSocket)."""
