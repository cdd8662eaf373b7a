"""Train a torchvision detector (Faster R-CNN, RetinaNet, FCOS) on a longseq backbone with Lightning.

Default: ``longseq_vit_tiny`` + simple feature pyramid + FPN + Faster R-CNN on the
scattered-digits detection set at 1024 x 1024 (generated offline, cached).

    python scripts/train_detector.py                                        # Faster R-CNN, 1024², 1 epoch
    python scripts/train_detector.py --backbone longseq_swin_tiny --detector retinanet --epochs 5
    python scripts/train_detector.py --data path/to/data.yaml --img-size 800
    python scripts/train_detector.py --data path/to/VOCdevkit/VOC2012 --img-size 800 --time-minutes 60
    python scripts/train_detector.py --img-size 2048 --batch-size 2 --max-steps 3   # memory check at 2048²
    python scripts/train_detector.py --img-size 64 --n-train 4 --n-val 2 --max-steps 2   # smoke

``--data`` takes a YOLO ``data.yaml`` (or a folder holding one) or a Pascal VOC folder
(``Annotations/``, ``JPEGImages/``, optional ``ImageSets/Main/{train,val}.txt``, else a
seeded split with ``--val-fraction``), which is converted once into ``<out>/data``.

Installed, the command is ``longseq-train-detector``. ``--config`` reads a YAML with the
sections ``model`` (``name``: a timm backbone, plus ``MultiScaleBackbone``'s arguments),
``data`` (``YoloDataModule``'s: ``data_yaml: null`` generates scattered digits; plus
``val_fraction``), ``task`` (``DetectionTask``'s; its ``image_size`` is ``data.img_size``)
and ``trainer`` (any ``lightning.Trainer`` argument, plus ``seed`` and ``time_minutes``);
default configs/detection/train_detector.yaml. Flags override the YAML,
``--print-config`` prints the merged config and exits.

The run ends at ``--epochs``, ``--max-steps`` or ``--time-minutes``, whichever comes
first; the final weights are validated once (at the last epoch's end, or after training
when it stopped inside an epoch). The summary gives the epochs done as a fraction
(training batches / batches per epoch), training minutes without validation, the best
validation's mAP50 and mAP50-95 beside the last one's, the trained model's parameters,
training images/s, peak memory and the checkpoints: ``last.ckpt`` (final weights) and
``best.ckpt`` (best mAP50-95). Both reload with
``DetectionTask.load_from_checkpoint(path, backbone=MultiScaleBackbone(...))``.
"""

from vision.cli.train_detector import main

if __name__ == "__main__":
    main()
