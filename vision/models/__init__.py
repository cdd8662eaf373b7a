"""longseq backbones, registered with timm on import."""

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

__all__ = ["LongseqViT", "LongseqSwin", "MODEL_CLASSES", "MODEL_NAMES"]
