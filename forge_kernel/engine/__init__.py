"""The engine: request -> scheduler -> runner -> sampler -> output, in one loop.

Importing this package imports torch; the CLI imports it only inside commands that run models.
"""
