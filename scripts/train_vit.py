#!/usr/bin/env python
"""Train a longseq vision backbone on image classification: ``python scripts/train_vit.py --help``, or the console command ``longseq-train-vit``.

The code, its usage text and examples live in :mod:`vision.cli.train_vit`."""

from vision.cli.train_vit import main

if __name__ == "__main__":
    main()
