#!/usr/bin/env python
"""Score whole records (chromosomes) with a trained causal DNA LM (console command: ``longseq-score-dna``): ``python scripts/score_dna.py --help``, or the console command ``longseq-score-dna``.

The code, its usage text and examples live in :mod:`genomics.cli.score_dna`."""

from genomics.cli.score_dna import main

if __name__ == "__main__":
    main()
