#!/usr/bin/env python
"""Benchmark longseq vision backbones beside timm ViT-S/16 and Swin-T at high resolution: ``python scripts/bench_vision.py --help``, or the console command ``longseq-bench-vision``.

The code, its usage text and examples live in :mod:`vision.cli.bench_vision`."""

from vision.cli.bench_vision import main

if __name__ == "__main__":
    main()
