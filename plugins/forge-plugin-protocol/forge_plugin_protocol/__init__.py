"""The request protocol that forge's OpenAI HTTP API (forge-plugin-openai) and WebSocket API
(forge-plugin-websocket) share, so both accept, reject and stream identically.

A library, not a plugin: it has no entry point, registers nothing, and needs neither FastAPI
nor a server. Modules: :mod:`~forge_plugin_protocol.protocol` (request bodies -> sampling
parameters), :mod:`~forge_plugin_protocol.prepare` (the one ``prepare()``: body -> engine
prompts), :mod:`~forge_plugin_protocol.errors` (OpenAI error objects),
:mod:`~forge_plugin_protocol.streaming` (running, collecting and streaming generations;
logprobs and usage in OpenAI's shapes; SSE framing).
"""
