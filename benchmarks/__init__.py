"""Benchmarks of the dmi estimator (run as scripts; a package so tests can import the helpers)."""
