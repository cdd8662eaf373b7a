#!/usr/bin/env python
"""Train an ultralytics YOLO model from its YAML on a detection set, within a time budget: ``python scripts/train_yolo_baseline.py --help``, or the console command ``longseq-train-yolo``.

The code, its usage text and examples live in :mod:`vision.cli.train_yolo_baseline`."""

from vision.cli.train_yolo_baseline import main

if __name__ == "__main__":
    main()
