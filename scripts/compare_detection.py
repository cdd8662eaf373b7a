"""A longseq YOLO-head model beside stock YOLO, on the same data and the same time budget.

Each model is trained by ``scripts/train_yolo_baseline.py`` (:mod:`vision.cli.train_yolo_baseline`)
in its own process (so peak memory is per model), then one table is printed: the best
epoch's mAP50 and mAP50-95 (the weights kept), the last epoch's mAP50-95, inference
images/s, training minutes without validation, epochs done (a fraction under a time
budget), the trained model's parameters, peak memory. Writes ``comparison.csv`` and
``predictions.png`` (ground truth and each model's detections on the same validation
image) in ``--out``. ``--data`` takes a YOLO ``data.yaml`` or a Pascal VOC folder, which
is converted once into ``<out>/data`` and shared by every run.

    python scripts/compare_detection.py                        # longseq hybrid ViT vs yolo11n, 1024², 30 min each
    python scripts/compare_detection.py --models configs/detection/longseq_vit_tiny_yolo.yaml yolo11s.yaml
    python scripts/compare_detection.py --img-size 64 --n-train 4 --n-val 2 --epochs 1 --time-minutes 0  # smoke

Installed, the command is ``longseq-compare-detection``. The flags under "passed on to
every run" (``--time-minutes``, ``--batch``, ``--config``...) go to every
``train_yolo_baseline`` run, with ``--img-size`` and ``--seed``.
"""

from vision.cli.compare_detection import main

if __name__ == "__main__":
    main()
