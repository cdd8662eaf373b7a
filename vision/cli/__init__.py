"""The vision console commands; each module's ``main(argv)`` is one command.

- ``longseq-train-vit`` (:mod:`vision.cli.train_vit`): image classification with Lightning.
- ``longseq-train-detector`` (:mod:`vision.cli.train_detector`): torchvision detectors.
- ``longseq-train-yolo`` (:mod:`vision.cli.train_yolo_baseline`): ultralytics YOLO models.
- ``longseq-compare-detection`` (:mod:`vision.cli.compare_detection`): YOLO models side by side.
- ``longseq-bench-vision`` (:mod:`vision.cli.bench_vision`): backbone speed and memory.

``scripts/<name>.py`` in a checkout runs the same ``main``. The training commands read a
YAML config with the sections ``model``, ``data``, ``task`` and ``trainer``
(:mod:`longseq.training.config`); flags override it and ``--print-config`` shows the result.
"""
