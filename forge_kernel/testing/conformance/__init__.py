"""Conformance suites third-party plugins subclass in their own tests (``BackendConformance``)."""
