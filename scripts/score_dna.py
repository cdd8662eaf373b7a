#!/usr/bin/env python
"""Score whole records (chromosomes) with a trained causal DNA LM (console command: ``longseq-score-dna``).

    python scripts/score_dna.py --ckpt runs/dna/lm/version_0/checkpoints/last.ckpt --fasta genome.fa.gz

Records longer than one window are scored by overlapping windows, stitched so each base
keeps the longest context. Prints bits per base per record (the first --per-record of them),
then a genome-wide line: bases scored and bits per base weighted by length, beside the
order-k Markov baseline fitted on the model's own training region (the genome and split the
checkpoint records, default E. coli K-12; k chosen on its validation windows as in
training) and scored on exactly the same bases, so a model and its baseline compare fairly
on a genome neither was trained on. Writes ``<out>/<record>.npy`` (float32 per-base log2
likelihoods, NaN where unscored: the first base and N), ``<out>/bits_per_base.tsv``
(record, length, bases_scored, bits_per_base, markov_bits_per_base) and
``<out>/summary.json`` (the genome-wide figures).
"""

from genomics.cli.score_dna import main

if __name__ == "__main__":
    main()
