#!/usr/bin/env python
"""Needle accuracy of a trained ``--task needle`` checkpoint at several window lengths
(console command: ``longseq-eval-needle``).

    python scripts/eval_needle.py --ckpt runs/needle/needle/version_0/checkpoints/last.ckpt \\
        --lengths 8192 65536 1048576

For each length L it draws ``--samples`` fixed test windows over the whole genome (as the
``test`` split of :class:`genomics.data.NeedleDataModule`: alternating labels, so a
motif-blind model scores exactly 50%), with the motif at least ``--min-distance`` bases before
the marker (default: 500,000 x L / 1,048,576, the ratio of the reference check; exactly
500,000 at 1,048,576), and reports accuracy, time per window and peak memory. Writes
``<out>/needle_eval.csv`` and ``<out>/needle_eval.png`` (accuracy against length).
"""

from genomics.cli.eval_needle import main

if __name__ == "__main__":
    main()
