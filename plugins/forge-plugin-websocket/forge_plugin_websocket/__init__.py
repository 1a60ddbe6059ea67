"""forge-plugin-websocket: a WebSocket endpoint (``/v1/ws``) streaming many concurrent
generations per connection, and :mod:`forge_plugin_websocket.client`, an async client.

The protocol is documented in ``docs/websocket.md``.
"""

__version__ = "0.1.0"
