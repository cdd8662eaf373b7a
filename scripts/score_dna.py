#!/usr/bin/env python
"""Score whole records (chromosomes) with a trained causal DNA LM (console command: ``longseq-score-dna``).

    python scripts/score_dna.py --ckpt runs/dna/lm/version_0/checkpoints/last.ckpt --fasta genome.fa.gz

Records longer than one window are scored by overlapping windows, stitched so each base
keeps the longest context. Writes ``<out>/<record>.npy`` (float32 per-base log2
likelihoods, NaN where unscored: the first base and N) and ``<out>/bits_per_base.tsv``.
"""

from genomics.cli.score_dna import main

if __name__ == "__main__":
    main()
