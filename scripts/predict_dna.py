#!/usr/bin/env python
"""Predict with a trained DNA model, or embed sequences (console command: ``longseq-predict-dna``): ``python scripts/predict_dna.py --help``, or the console command ``longseq-predict-dna``.

The code, its usage text and examples live in :mod:`genomics.cli.predict_dna`."""

from genomics.cli.predict_dna import main

if __name__ == "__main__":
    main()
