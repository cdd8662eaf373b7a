#!/usr/bin/env python
"""Export a longseq backbone, or a classifier trained with ``scripts/train_vit.py``, to ONNX (symbolic batch, height and width), check it, or time it: ``python scripts/export_onnx.py --help``, or the console command ``longseq-export-onnx``.

The code, its usage text and examples live in :mod:`vision.cli.export_onnx`."""

from vision.cli.export_onnx import main

if __name__ == "__main__":
    main()
