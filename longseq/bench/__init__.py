"""Benchmarks run from the command line (``longseq-bench``); not imported by ``longseq``."""
