#!/usr/bin/env python
"""Predict with a trained DNA model, or embed sequences (console command: ``longseq-predict-dna``).

    python scripts/predict_dna.py --ckpt runs/dna/classification/version_0/checkpoints/last.ckpt --data seqs.csv --out preds.csv
    python scripts/predict_dna.py --ckpt runs/dna/annotation/version_0/checkpoints/last.ckpt --data seqs.fa --out preds.bed
    python scripts/predict_dna.py --ckpt runs/dna/lm/version_0/checkpoints/last.ckpt --data seqs.fa --out bits.tsv
    python scripts/predict_dna.py --ckpt runs/dna/lm/version_0/checkpoints/last.ckpt --data seqs.fa --embed --out emb.npy

What is written follows the checkpoint's task (no Lightning needed: genomics.load_model):

* classification: CSV ``id,length,p_<class>...,predicted``, one row per sequence.
* annotation: BED4 ``id start end label`` (0-based, end exclusive), one line per run of the
  same label other than the background class 0 (intergenic).
* lm (causal): per-base bits ``-log2 p(base | bases before it)`` of every scored base (the
  first base and N are not scored): TSV ``id position bits`` (CSV for a ``.csv`` name), or
  bedGraph for a ``.bedgraph``/``.bg`` name; per-sequence means go to
  ``<out stem>.per_sequence.csv`` (``id,length,bases_scored,bits_per_base``) and the console.
* ``--embed`` (any checkpoint): encoder features averaged over each sequence's bases, a
  float32 ``.npy`` array (sequences x dim), with ``<out stem>.ids.csv`` (``row,id,length``).

``--data`` is FASTA/FASTQ/GenBank (plain or gzip) or a CSV/TSV table (plain or gzip) with a
``sequence`` (or ``seq``) column; ids come from an ``id`` or ``name`` column, else the row
number (1 = first sequence). Sequences up to ``--window`` bases (default: the longest input
the model trained on) go through the model whole, in padded batches; a longer one goes in
windows of ``--window`` bases every ``--stride`` bases, the last ending at the sequence end:
classification probabilities and embeddings are averaged over the windows (default stride:
the window), per-base labels come from the window where the base is farthest from an edge,
and per-base bits from the window giving the most left context (default stride for both:
3/4 of the window).
"""

from genomics.cli.predict_dna import main

if __name__ == "__main__":
    main()
