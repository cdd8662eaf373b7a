"""Train an ultralytics YOLO model from its YAML on a detection set, within a time budget.

Default: stock ``yolo11n.yaml`` (built from its YAML; no pretrained weights, nothing
downloaded) on the scattered-digits detection set at 1024 x 1024 (512 train / 64 val
canvases with 3-10 digits each, generated offline and cached on first use), for 30 minutes.
The same command trains the longseq models: pass a longseq model YAML, e.g.
``--model configs/detection/longseq_vit_tiny_yolo.yaml`` (the longseq modules are always
registered with ultralytics).

    python scripts/train_yolo_baseline.py                                  # yolo11n, 1024², 30 min
    python scripts/train_yolo_baseline.py --model yolo11s.yaml --time-minutes 60
    python scripts/train_yolo_baseline.py --model configs/detection/longseq_vit_tiny_yolo.yaml
    python scripts/train_yolo_baseline.py --data path/to/data.yaml --img-size 640
    python scripts/train_yolo_baseline.py --data path/to/VOCdevkit/VOC2012 --img-size 640 --time-minutes 60
    python scripts/train_yolo_baseline.py --img-size 64 --n-train 4 --n-val 2 --epochs 1 --time-minutes 0  # smoke

``--data`` takes a YOLO ``data.yaml`` (or a folder holding one) or a Pascal VOC folder
(``Annotations/``, ``JPEGImages/``, optional ``ImageSets/Main/{train,val}.txt``, else a
seeded split with ``--val-fraction``), which is converted once into ``<run folder>/data``.

Installed, the command is ``longseq-train-yolo``. ``--config`` reads a YAML with the sections
``model`` (``name``: an ultralytics model YAML or weights), ``data`` (``data_yaml``, or
null to generate scattered digits with the generator's arguments; ``val_fraction``) and
``trainer`` (ultralytics' train arguments, plus ``time_minutes``, ``threads`` and
``summary_json``); default configs/detection/train_yolo_baseline.yaml. Flags override the
YAML, ``--print-config`` prints the merged config and exits.

Every epoch is validated once, during training (the final weights too); nothing is
validated again afterwards. Prints one summary and writes it as ``summary.json`` in the
run folder (``--summary-json`` to choose): epochs done as a fraction (training batches /
batches per epoch), training time without validation, the best epoch's mAP50 and
mAP50-95 (``best.pt``, the weights kept) beside the last epoch's, inference images/s,
the trained model's parameters, peak memory, and the predictions on the first
validation image, which ``scripts/compare_detection.py`` draws.
"""

from vision.cli.train_yolo_baseline import main

if __name__ == "__main__":
    main()
