#!/usr/bin/env python
"""Attention benchmark: longseq patterns vs dense SDPA, a matmul floor and peers.

The logic lives in :mod:`longseq.bench.attention` (also the ``longseq-bench`` command);
``python scripts/bench_attention.py --help`` lists its flags.
"""

from longseq.bench.attention import main

if __name__ == "__main__":
    main()
