#!/usr/bin/env python
"""Train a DNA model with longseq attention: ``python scripts/train_dna.py --help``, or the console command ``longseq-train-dna``.

The code, its usage text and examples live in :mod:`genomics.cli.train_dna`."""

from genomics.cli.train_dna import main

if __name__ == "__main__":
    main()
