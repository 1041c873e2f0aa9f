"""Benchmarks and measurements: run them as `python -m bench.<name>` (see the Makefile)."""
