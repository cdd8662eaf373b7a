#!/usr/bin/env python
"""Train the default DNA language model once per attention pattern and compare bits per base: ``python scripts/compare_dna_patterns.py --help``, or the console command ``longseq-compare-dna-patterns``.

The code, its usage text and examples live in :mod:`genomics.cli.compare_patterns`."""

from genomics.cli.compare_patterns import main

if __name__ == "__main__":
    main()
