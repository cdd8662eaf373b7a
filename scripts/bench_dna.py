#!/usr/bin/env python
"""Benchmark one training step (forward, backward, AdamW) of the default DNA model
(console command: ``longseq-bench-dna``).

    python scripts/bench_dna.py                                  # 16k .. 1,048,576 bases, fp32 + bf16-mixed
    python scripts/bench_dna.py --seq-lens 4096 16384 --steps 1  # quick check
    python scripts/bench_dna.py --reuse-freed-memory             # faster, more memory (see --help)

Each (length, precision) runs in its own subprocess so its peak RSS is its own. Input is a
real E. coli K-12 window (batch 1). Writes ``<out>/bench_dna.csv`` and ``<out>/bench_dna.png``
(tokens/s and peak RSS against length, with HyenaDNA-tiny's measured CPU figure for
reference: 262,144 bases at ~9,400 tokens/s in 10.5 GB; it cannot train at 1,048,576).
A plain matmul in each precision is timed in the same run (``matmul_gflops`` column), so
tokens/s can be compared across machines as tokens/s per matmul GFLOP/s: the reference
figure of 19,000 tokens/s comes from a machine whose fp32 matmul ran at ~410 GFLOP/s.
"""

from genomics.cli.bench_dna import main

if __name__ == "__main__":
    main()
