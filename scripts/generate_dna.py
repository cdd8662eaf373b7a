#!/usr/bin/env python
"""Sample DNA from a trained causal DNA LM, continuing a prompt (console command: ``longseq-generate-dna``): ``python scripts/generate_dna.py --help``, or the console command ``longseq-generate-dna``.

The code, its usage text and examples live in :mod:`genomics.cli.generate_dna`."""

from genomics.cli.generate_dna import main

if __name__ == "__main__":
    main()
