"""longseq backbones, registered with timm on import.

``pretrained=True`` loads a local timm checkpoint (there are no weights to download):
``timm.create_model("longseq_vit_small", pretrained=True,
pretrained_cfg_overlay=dict(file=PATH))`` for timm's ``vit_small_patch16_224`` (likewise
tiny and base, and ``longseq_swin_tiny`` from ``swin_tiny_patch4_window7_224``); the key
mapping is in :mod:`vision.models.timm_keys`.
"""

from vision.models.checkpoint_io import CheckpointMismatchError
from vision.models.pretrained import create_pretrained
from vision.models.swin import LongseqSwin
from vision.models.vit import LongseqViT

#: Every timm name this package registers (the first six are the public contract).
MODEL_NAMES = (
    "longseq_vit_tiny", "longseq_vit_small", "longseq_vit_base",
    "longseq_swin_tiny", "longseq_swin_small", "longseq_swin_base",
    "longseq_vit_digits",
)

#: The class each registered name builds: its ``__init__`` lists the keyword arguments
#: ``timm.create_model(name, **kwargs)`` accepts for that name.
MODEL_CLASSES = {name: LongseqSwin if name.startswith("longseq_swin") else LongseqViT for name in MODEL_NAMES}

__all__ = ["LongseqViT", "LongseqSwin", "MODEL_CLASSES", "MODEL_NAMES", "CheckpointMismatchError", "create_pretrained"]
