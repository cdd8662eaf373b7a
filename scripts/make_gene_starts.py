#!/usr/bin/env python
"""Write a gene-start classification table from annotated GenBank genomes: ``python scripts/make_gene_starts.py --help``, or the console command ``longseq-make-gene-starts``.

The code, its usage text and examples live in :mod:`genomics.cli.make_gene_starts`."""

from genomics.cli.make_gene_starts import main

if __name__ == "__main__":
    main()
