#!/usr/bin/env python
"""A longseq YOLO-head model beside stock YOLO, on the same data and the same time budget: ``python scripts/compare_detection.py --help``, or the console command ``longseq-compare-detection``.

The code, its usage text and examples live in :mod:`vision.cli.compare_detection`."""

from vision.cli.compare_detection import main

if __name__ == "__main__":
    main()
