"""Conformance suites that every backend's tests inherit (a backend is done when its suite passes)."""
