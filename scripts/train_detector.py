#!/usr/bin/env python
"""Train a torchvision detector (Faster R-CNN, RetinaNet, FCOS) on a longseq backbone with Lightning: ``python scripts/train_detector.py --help``, or the console command ``longseq-train-detector``.

The code, its usage text and examples live in :mod:`vision.cli.train_detector`."""

from vision.cli.train_detector import main

if __name__ == "__main__":
    main()
