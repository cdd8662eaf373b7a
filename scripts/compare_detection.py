"""A longseq YOLO-head model beside stock YOLO, on the same data and the same time budget.

Each model is trained by ``scripts/train_yolo_baseline.py`` (:mod:`vision.cli.train_yolo_baseline`)
in its own process (so peak memory is per model), then one table is printed: mAP50, mAP50-95, inference images/s,
training time, parameters, peak memory. Writes ``comparison.csv`` and
``predictions.png`` (ground truth and each model's detections on the same validation
image) in ``--out``.

    python scripts/compare_detection.py                        # longseq hybrid ViT vs yolo11n, 1024², 30 min each
    python scripts/compare_detection.py --models configs/detection/longseq_vit_tiny_yolo.yaml yolo11s.yaml
    python scripts/compare_detection.py --img-size 64 --n-train 4 --n-val 2 --epochs 1 --time-minutes 0  # smoke

Installed, the command is ``longseq-compare-detection``. Flags it does not know (``--time-minutes``,
``--batch``, ``--config``...) go to every ``train_yolo_baseline`` run.
"""

from vision.cli.compare_detection import main

if __name__ == "__main__":
    main()
