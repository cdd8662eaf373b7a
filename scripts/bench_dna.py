#!/usr/bin/env python
"""Benchmark one training step (forward, backward, AdamW) of the default DNA model: ``python scripts/bench_dna.py --help``, or the console command ``longseq-bench-dna``.

The code, its usage text and examples live in :mod:`genomics.cli.bench_dna`."""

from genomics.cli.bench_dna import main

if __name__ == "__main__":
    main()
