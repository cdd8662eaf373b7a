"""longseq vision: windowed-attention backbones for high-resolution images.

Importing ``vision`` registers the backbones with timm (``longseq_vit_{tiny,small,base}``,
``longseq_swin_{tiny,small,base}``, ``longseq_vit_digits``), so
``timm.create_model("longseq_vit_small", pretrained=False, num_classes=10)`` works.
Training pieces (Lightning) live in :mod:`vision.tasks` and :mod:`vision.data.datamodules`,
the console commands in :mod:`vision.cli`; all are imported only when used.
"""

from vision import models  # noqa: F401  (timm registration is the one import-time side effect)
from vision.models import LongseqSwin, LongseqViT, MODEL_NAMES

__all__ = ["models", "LongseqViT", "LongseqSwin", "MODEL_NAMES"]
