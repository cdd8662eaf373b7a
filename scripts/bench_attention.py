#!/usr/bin/env python
"""Attention benchmark: longseq patterns vs dense SDPA, a matmul floor and peers: ``python scripts/bench_attention.py --help``, or the console command ``longseq-bench``.

The code, its usage text and examples live in :mod:`longseq.bench.attention`."""

from longseq.bench.attention import main

if __name__ == "__main__":
    main()
