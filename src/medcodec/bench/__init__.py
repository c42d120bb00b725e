"""Benchmark helpers: the metrics and BD-rate of ``shared/BENCHMARK.md``."""
