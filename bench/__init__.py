"""Benchmarks: quick local measurements of the hub's hot paths (``make bench``)."""
