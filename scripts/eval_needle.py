#!/usr/bin/env python
"""Needle accuracy of a trained ``--task needle`` checkpoint at several window lengths: ``python scripts/eval_needle.py --help``, or the console command ``longseq-eval-needle``.

The code, its usage text and examples live in :mod:`genomics.cli.eval_needle`."""

from genomics.cli.eval_needle import main

if __name__ == "__main__":
    main()
