"""The interfaces plugins implement, one module per role (docs/plugins/interfaces.md lists
each kind and its registration hook). Imports only point "down" (tokenizer <- loader <-
backend; batch <- kv_cache <- model <- architecture) and name torch only for type checking,
so importing an interface stays cheap."""
