"""Test kit for forge plugins (fixtures, recorders, conformance suites)."""
