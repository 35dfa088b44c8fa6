"""Benchmarks: `python -m bench` (make bench); the shared harness, the scenarios and the report."""
