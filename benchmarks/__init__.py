"""fix7's benchmarks (`make bench*`, docs/BENCHMARK.md): run from a checkout, never shipped in the package.

They use the package's public API only (fix7_pipeline_tests/core/test_layout.py checks it).
"""
