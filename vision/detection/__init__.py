"""Object detection with longseq backbones.

- :mod:`vision.detection.pyramid`: ``MultiScaleBackbone``, strides 8/16/32 from any timm backbone.
- :mod:`vision.detection.torchvision_detectors`: Faster R-CNN / RetinaNet / FCOS around it.
- :mod:`vision.detection.lightning`: ``DetectionTask`` (mAP via torchmetrics) and ``YoloDataModule``.
- :mod:`vision.detection.yolo_format`, :mod:`~vision.detection.voc`, :mod:`~vision.detection.dataset`:
  YOLO-format folders, Pascal VOC import, bad-label reports, a torch Dataset.
- :mod:`vision.detection.voc_folder`: a whole VOC folder (split, converted once) as ``--data``.
- :mod:`vision.detection.progress`: ``RunProgress``, what a Lightning run did, for its summary.
- :mod:`vision.detection.generate`: the scattered-digits detection set in YOLO format.

The ultralytics integration is :func:`vision.integrations.ultralytics.YOLO` (ultralytics'
``YOLO`` with the longseq modules registered; :func:`~vision.integrations.ultralytics.register`
underneath).
Submodules are imported on demand; this package imports nothing heavy.
"""
