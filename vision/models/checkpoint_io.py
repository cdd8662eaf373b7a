"""Reading a local checkpoint for ``pretrained=True``: where it is, what it holds, how it fits.

The longseq backbones have no weights to download; ``timm.create_model(name,
pretrained=True, pretrained_cfg_overlay=dict(file=PATH))`` names a local file (``.pth``,
``.bin``, ``.pt`` or ``.safetensors``), which timm's own loader reads. This module finds
that file before the model is built (:func:`pretrained_source`), lists its tensor shapes
without loading the tensors (:func:`checkpoint_shapes`, so a model can take its
architecture defaults from them), and checks a renamed state dict against the model
(:func:`fit_to_model`): missing and unused tensors are logged by name, tensors whose
shapes differ are an error naming the file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

__all__ = ["CheckpointMismatchError", "checkpoint_shapes", "fit_to_model", "pretrained_source", "source_name",
           "unwrap_state_dict"]

log = logging.getLogger(__name__)

#: Wrapper prefixes that DDP and torch.compile add to parameter names (timm strips them too).
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
#: Keys under which training checkpoints nest the weights, in timm's order of preference.
_NESTED_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model")
#: How many offending keys an error message lists.
_SHOWN = 5


class CheckpointMismatchError(ValueError):
    """A checkpoint that does not fit the model's architecture (the message names the file)."""


def pretrained_source(variant: str, kwargs: Mapping[str, Any]) -> str | dict[str, Tensor]:
    """The local checkpoint that ``timm.create_model(variant, pretrained=True, **kwargs)`` loads:
    the path in ``pretrained_cfg_overlay=dict(file=...)`` (or a ``pretrained_cfg`` holding
    one), or a state dict given as ``dict(state_dict=...)``.

    Raises ``ValueError`` when there is none: no longseq backbone has weights to download.
    """
    from timm.models import resolve_pretrained_cfg

    cfg = resolve_pretrained_cfg(variant, pretrained_cfg=kwargs.get("pretrained_cfg"),
                                 pretrained_cfg_overlay=kwargs.get("pretrained_cfg_overlay")).to_dict()
    if isinstance(cfg.get("state_dict"), dict):
        return cfg["state_dict"]
    if cfg.get("file"):
        return str(cfg["file"])
    raise ValueError(f"{variant} has no weights to download; pretrained=True needs a local checkpoint, "
                     "pretrained_cfg_overlay=dict(file=PATH) (.pth, .bin or .safetensors), or use pretrained=False")


def unwrap_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The weights of a loaded checkpoint: the nested state dict of a training checkpoint
    (EMA weights first, as timm), without DDP / torch.compile prefixes."""
    for key in _NESTED_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    out = {}
    for k, v in checkpoint.items():
        for prefix in _WRAPPER_PREFIXES:
            k = k.removeprefix(prefix)
        out[k] = v
    return out


def checkpoint_shapes(source: str | Path | Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of every tensor in a checkpoint file (or state dict), keys as
    :func:`unwrap_state_dict` gives them.

    A ``.safetensors`` file is read from its header alone; other files are memory-mapped
    where torch can, so the tensors themselves are not read.
    """
    if isinstance(source, Mapping):
        return {k: tuple(v.shape) for k, v in unwrap_state_dict(source).items() if isinstance(v, Tensor)}
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        return {k: v for k, v in unwrap_state_dict(shapes).items()}
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # a legacy (non-zip) file cannot be memory-mapped
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(loaded, Mapping):
        raise CheckpointMismatchError(f"{path}: not a state dict (a {type(loaded).__name__})")
    return checkpoint_shapes(loaded)


def source_name(model: nn.Module) -> str:
    """The checkpoint a model is loading, for messages: its file, or ``"the given state dict"``."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return str(cfg["file"]) if cfg.get("file") and not cfg.get("state_dict") else "the given state dict"


def _listed(keys: list[str]) -> str:
    return ", ".join(keys)


def fit_to_model(state_dict: Mapping[str, Tensor], model: nn.Module, source: str,
                 classifier: str = "head.fc") -> dict[str, Tensor]:
    """The tensors of ``state_dict`` (already renamed to ``model``'s keys) that ``model`` takes.

    Logs one warning listing the model's tensors the checkpoint lacks (they keep their
    initialisation) and the checkpoint's tensors the model has no place for; a classifier
    ``classifier.*`` of another class count is left out with an info line (the model's
    starts fresh, as when fine-tuning). Raises :class:`CheckpointMismatchError` naming
    ``source`` and the first keys with both shapes when any other tensor's shape differs
    (a checkpoint of another architecture or size), or when no tensor matches at all.
    """
    own = model.state_dict()
    head_keys = [k for k in state_dict if k.startswith(classifier + ".")]
    if any(k not in own or own[k].shape != state_dict[k].shape for k in head_keys):
        shape = tuple(state_dict[head_keys[0]].shape)
        log.info("%s: classifier %s %s not loaded (the model's has %d classes and starts fresh)",
                 source, classifier, shape, getattr(model, "num_classes", 0))
        state_dict = {k: v for k, v in state_dict.items() if k not in head_keys}
    mismatched = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state_dict.items()
                  if k in own and v.shape != own[k].shape]
    if mismatched:
        shown = "; ".join(f"{k}: checkpoint {a} vs model {b}" for k, a, b in mismatched[:_SHOWN])
        more = f" (and {len(mismatched) - _SHOWN} more)" if len(mismatched) > _SHOWN else ""
        raise CheckpointMismatchError(
            f"{source}: {len(mismatched)} tensor(s) do not fit {type(model).__name__}: {shown}{more}; "
            "a checkpoint of another model size? (longseq_vit_tiny/small/base load timm's "
            "vit_tiny/small/base_patch16_224, longseq_swin_tiny timm's swin_tiny_patch4_window7_224)")
    used = {k: v for k, v in state_dict.items() if k in own}
    if not used:
        first = _listed(list(state_dict)[:_SHOWN])
        raise CheckpointMismatchError(f"{source}: no tensor matches {type(model).__name__} (first keys: {first})")
    missing = [k for k in own if k not in used and not k.startswith(classifier + ".")]
    if not head_keys and any(k.startswith(classifier + ".") for k in own):
        log.info("%s: no classifier %s in the checkpoint (the model's starts fresh)", source, classifier)
    unused = [k for k in state_dict if k not in own]
    if missing or unused:
        log.warning("%s: %d model tensor(s) not in the checkpoint, left as initialised: [%s]; "
                    "%d checkpoint tensor(s) not used: [%s]", source, len(missing), _listed(missing),
                    len(unused), _listed(unused))
    return used
