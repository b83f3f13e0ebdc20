"""Benchmarks for jsonservice against baselines, all measured in one run (``make bench``)."""
