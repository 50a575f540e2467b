"""Benchmarks (issue 6). Not part of the test suite: run ``python -m bench.run [--quick]``."""
