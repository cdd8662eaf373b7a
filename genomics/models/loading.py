"""Load a ``longseq-train-dna`` checkpoint as a plain ``nn.Module``, without Lightning.

A checkpoint holds the backbone's ``model_config`` (its constructor arguments, plain values)
in ``hyper_parameters``, the data module's arguments in ``datamodule_hyper_parameters``, and
(from the tasks' ``on_save_checkpoint``) a :data:`RECORD_KEY` entry naming the task, the
class names and the longest window trained. :func:`load_model` reads it with
``torch.load(weights_only=True)`` (tensors and plain containers only; nothing is executed),
rebuilds :class:`~genomics.models.DNALanguageModel` or :class:`~genomics.models.DNAClassifier`
and loads the weights strictly. Checkpoints written before the record existed are read too:
the task is then inferred from the model config.
"""

from __future__ import annotations

import logging
import pathlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, NamedTuple

import torch
from torch import Tensor, nn

from genomics.data.tokenizers import NucleotideTokenizer

__all__ = ["RECORD_KEY", "CheckpointError", "CheckpointInfo", "LoadedModel", "TaskName", "checkpoint_info",
           "checkpoint_safe_globals", "fit_problems", "load_model", "name_list", "read_checkpoint", "state_differences"]

log = logging.getLogger(__name__)

TaskName = Literal["lm", "classification", "annotation", "needle"]
#: Checkpoint key of the tasks' own record: ``{"task", "class_names", "longest_train_input", "schedule"}``.
RECORD_KEY = "genomics"
_PREFIX = "backbone."  # the tasks hold the model as ``self.backbone``
_SHOWN = 5  # parameter names listed in an error
#: Types a checkpoint's hyper-parameters may hold besides plain containers (paths given as
#: ``Path``); nothing else is unpickled unless the caller trusts the file.
_SAFE_PATH_TYPES = (pathlib.Path, pathlib.PosixPath, pathlib.PurePosixPath, pathlib.WindowsPath,
                    pathlib.PureWindowsPath)


class CheckpointError(ValueError):
    """A file that is not a ``longseq-train-dna`` checkpoint, or whose weights do not fit its config."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about its model.

    Attributes:
        path: the checkpoint file.
        task: ``"lm"``, ``"classification"``, ``"annotation"`` or ``"needle"``.
        class_names: one name per output class (None for a language model); ``"0"``, ``"1"``,
            ... when the checkpoint saved none.
        model_config: the model's constructor arguments.
        data_config: the data module's constructor arguments ({} when not saved); ``fasta``
            is the training genome (None: the default genome of the task).
        trained_len: the longest input trained on, in bases (None when unknown).
    """

    path: Path
    task: TaskName
    class_names: tuple[str, ...] | None
    model_config: dict[str, Any] = field(repr=False)
    data_config: dict[str, Any] = field(repr=False)
    trained_len: int | None


class LoadedModel(NamedTuple):
    """``model, tokenizer, info = load_model(path)``."""

    model: nn.Module
    tokenizer: NucleotideTokenizer
    info: CheckpointInfo


def checkpoint_safe_globals() -> Any:
    """A context in which ``torch.load(weights_only=True)`` also accepts the path types a
    checkpoint's hyper-parameters may hold (for ``Trainer.fit(..., weights_only=True)``)."""
    return torch.serialization.safe_globals(list(_SAFE_PATH_TYPES))


def _load(path: Path, map_location: str | torch.device, trusted: bool) -> Any:
    if trusted:
        return torch.load(path, map_location=map_location, weights_only=False)
    with checkpoint_safe_globals():
        return torch.load(path, map_location=map_location, weights_only=True)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", *,
                    trusted: bool = False) -> dict[str, Any]:
    """The checkpoint at ``path`` as a dict, read with ``weights_only=True`` (tensors, plain
    containers and paths; ``trusted=True`` unpickles anything, for files from a trusted
    source only). Raises :class:`CheckpointError` naming the file when it is missing, not a
    PyTorch file, or not a ``longseq-train-dna`` checkpoint (no ``state_dict`` and
    ``hyper_parameters.model_config``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:4] != b"PK\x03\x04" and head[:1] != b"\x80":  # torch.save: a zip (or a legacy pickle)
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a torch.save zip nor a pickle)")
    try:
        ckpt = _load(path, map_location, trusted)
    except pickle.UnpicklingError as exc:
        detail = next((line.strip() for line in str(exc).splitlines() if "WeightsUnpickler error" in line), "")
        detail = detail.split("WeightsUnpickler error:", 1)[-1].strip().split(" was not an allowed")[0]
        raise CheckpointError(f"{path}: not a PyTorch checkpoint, or one holding objects other than tensors and "
                              f"plain values{f' ({detail})' if detail else ''}; if you trust its source, load it "
                              f"with trusted=True (--trust-checkpoint)") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), Mapping):
        raise CheckpointError(f"{path}: not a longseq-train-dna checkpoint (no 'state_dict')")
    hparams = ckpt.get("hyper_parameters")
    if not isinstance(hparams, Mapping) or not isinstance(hparams.get("model_config"), Mapping):
        raise CheckpointError(f"{path}: not a longseq-train-dna checkpoint (no 'hyper_parameters.model_config' "
                              f"to build the model from)")
    return ckpt


def _infer_task(model_config: Mapping[str, Any], data_config: Mapping[str, Any]) -> TaskName:
    if "objective" in model_config:
        return "lm"
    if model_config.get("pool") == "none":
        return "annotation"
    if "motif_len" in data_config or model_config.get("pool") == "query":
        return "needle"
    return "classification"


def checkpoint_info(ckpt: Mapping[str, Any], path: str | Path) -> CheckpointInfo:
    """The :class:`CheckpointInfo` of a checkpoint dict read from ``path``."""
    model_config = dict(ckpt["hyper_parameters"]["model_config"])
    data_config = dict(ckpt.get("datamodule_hyper_parameters") or {})
    record = dict(ckpt.get(RECORD_KEY) or {})
    task = record.get("task") or _infer_task(model_config, data_config)
    if task not in ("lm", "classification", "annotation", "needle"):
        raise CheckpointError(f"{path}: unknown task {task!r} in the checkpoint's {RECORD_KEY!r} record")
    class_names = None
    if task != "lm":
        n = int(model_config.get("num_classes", 0))
        saved = record.get("class_names")
        class_names = tuple(str(c) for c in saved) if saved and len(saved) == n else tuple(str(i) for i in range(n))
    trained = record.get("longest_train_input") or data_config.get("max_len") or \
        data_config.get("val_seq_len") or data_config.get("seq_len")
    return CheckpointInfo(Path(path), task, class_names, model_config, data_config,
                          int(trained) if trained else None)


def _model_state(ckpt: Mapping[str, Any]) -> dict[str, Tensor]:
    """The model's own weights: the task's ``backbone.`` entries, prefix removed."""
    return {k[len(_PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(_PREFIX)}


def state_differences(own: Mapping[str, Tensor], state: Mapping[str, Tensor]) -> dict[str, list[str]]:
    """How ``state`` differs from a model's ``own`` state dict: ``shape`` (``name: checkpoint
    (..), model (..)``), ``missing`` (in the model, not the checkpoint) and ``unexpected``
    (in the checkpoint, not the model), each a list of names in the model's order."""
    return {
        "shape": [f"{k}: checkpoint {tuple(state[k].shape)}, model {tuple(own[k].shape)}"
                  for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)],
        "missing": [k for k in own if k not in state],
        "unexpected": [k for k in state if k not in own],
    }


def name_list(names: list[str], shown: int = _SHOWN) -> str:
    """The first ``shown`` names, then how many more."""
    more = f" (and {len(names) - shown} more)" if len(names) > shown else ""
    return "; ".join(names[:shown]) + more


def fit_problems(differences: Mapping[str, list[str]],
                 kinds: tuple[str, ...] = ("shape", "missing", "unexpected")) -> str:
    """The differences of ``kinds`` in words ("" when there is none)."""
    titles = {"shape": "shape mismatch", "missing": "missing from the checkpoint", "unexpected": "not in the model"}
    return " | ".join(f"{titles[k]}: {name_list(differences[k])}" for k in kinds if differences.get(k))


def _check_fits(model: nn.Module, state: Mapping[str, Tensor], path: Path) -> None:
    """Raise :class:`CheckpointError` listing missing, unexpected and mis-shaped parameters."""
    problems = fit_problems(state_differences(model.state_dict(), state))
    if problems:
        raise CheckpointError(f"{path}: the weights do not fit the model its config builds; {problems}")


def load_model(path: str | Path, map_location: str | torch.device = "cpu", *, trusted: bool = False) -> LoadedModel:
    """Rebuild the model of a ``longseq-train-dna`` checkpoint, in eval mode, with its tokenizer.

    Returns :class:`LoadedModel` ``(model, tokenizer, info)``: ``model`` is a
    :class:`~genomics.models.DNALanguageModel` (``info.task == "lm"``; ids (B, L) -> logits
    (B, L, V)) or a :class:`~genomics.models.DNAClassifier` (ids (B, L) -> logits (B, C), or
    (B, L, C) for ``"annotation"``). Raises :class:`CheckpointError` naming the file when it is
    not such a checkpoint, when its config does not build a model, or when the weights do not
    fit (the first few parameter names with both shapes). ``trusted``: see :func:`read_checkpoint`.
    """
    from genomics.models.classifier import DNAClassifier
    from genomics.models.language_model import DNALanguageModel

    path = Path(path)
    ckpt = read_checkpoint(path, map_location, trusted=trusted)
    info = checkpoint_info(ckpt, path)
    model_class = DNALanguageModel if info.task == "lm" else DNAClassifier
    try:
        model = model_class(**info.model_config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: its model_config does not build a {model_class.__name__}: {exc}") from None
    state = _model_state(ckpt)
    _check_fits(model, state, path)
    model.load_state_dict(state)
    model.to(map_location).eval()
    tokenizer = NucleotideTokenizer("keep" if info.model_config.get("vocab_size", 9) > 9 else "upper")
    log.info("loaded %s (%s, %d parameters)", path, info.task, sum(p.numel() for p in model.parameters()))
    return LoadedModel(model, tokenizer, info)
