"""Benchmarks: each module is runnable (``python -m bench.<name>``), prints a table and writes
JSON to ``bench/results/``.  Figures are ratios against baselines run in the same invocation."""
