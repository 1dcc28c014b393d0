"""Benchmarks: each ``bench/bench_*.py`` prints a table and writes ``bench/results_*.json``;
``python -m bench`` (``bench/run_all.py``) runs them all and gathers one table."""
