"""Speculative decoding for the forge engine (``forge serve --speculative ngram``)."""
