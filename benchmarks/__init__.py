"""Benchmarks: GPU timing harness, ceilings and suites (not tests; run on a GPU)."""
