"""Starting a training run from another run's weights (``longseq-train-dna --init-from``).

Two cases, by the checkpoint's task (its :data:`~genomics.models.loading.RECORD_KEY` record):

* the same task as the new run (a language model continued at longer windows, a needle model
  trained further, a classifier trained further): every weight is loaded; any name or shape
  that differs is an error, except in the head of a ``classification`` or ``annotation``
  model: a classifier started on data with another number of classes, or with
  another ``model.positions`` (a flatten readout), loads the encoder and starts the whole
  head fresh, with a warning naming the tensors that differ;
* another task (a pretrained language model fine-tuned for ``classification`` or
  ``annotation``): the shared encoder (``backbone.backbone.*``: embedding, k-mer
  convolution, attention blocks, norms) is loaded and the new task's head starts fresh. Head
  tensors and encoder tensors the checkpoint lacks are listed in a warning; an encoder tensor
  whose shape differs is an error naming both shapes.

:func:`adopt_model_config` takes the weight-shaping keys of the model section (``dim``,
``depth``, ``heads``, ``window``, ...) from the checkpoint unless the user's own config sets
them, so the shapes match by default.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from torch import nn

from genomics.models.loading import (
    CheckpointError, CheckpointInfo, checkpoint_info, fit_problems, name_list, state_differences,
)

__all__ = ["ENCODER_KEYS", "ENCODER_PREFIX", "InitReport", "adopt_model_config", "check_init_task",
           "init_from_checkpoint"]

log = logging.getLogger(__name__)

#: Model-section keys that decide the encoder's weights (names and shapes).
ENCODER_KEYS = ("vocab_size", "dim", "depth", "heads", "window", "global_tokens", "lsh_layers", "lsh_bucket_size",
                "lsh_n_hashes", "mlp_ratio", "kv_heads", "reversible", "rope_dim", "kmer_kernel",
                "conv_layers", "conv_kernel", "global_length_scale")
#: Encoder keys a checkpoint may not record, and the value its model was built with then.
_BUILT_WITHOUT = {"conv_layers": 0}
#: The shared encoder's parameters inside a task (task.backbone = model, model.backbone = encoder).
ENCODER_PREFIX = "backbone.backbone."
#: Tasks a checkpoint of another task can start (encoder transfer), and the tasks it may come from.
_FINE_TUNED = ("classification", "annotation")
_SOURCES = ("lm", "classification", "annotation")


@dataclass
class InitReport:
    """What :func:`init_from_checkpoint` did, by parameter name: ``loaded`` from the checkpoint,
    ``fresh`` (left as initialised), ``unused`` (checkpoint tensors not loaded)."""

    path: Path
    source_task: str
    loaded: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)


def check_init_task(info: CheckpointInfo, task: str, flag: str = "--init-from") -> None:
    """Raise :class:`CheckpointError` when a ``info.task`` checkpoint cannot start a ``task`` run."""
    if info.task == task:
        return
    if task in _FINE_TUNED and info.task in _SOURCES:
        return
    if task in _FINE_TUNED:
        raise CheckpointError(f"{flag} {info.path}: a {info.task} checkpoint; --task {task} starts from a "
                              f"{', '.join(_SOURCES)} checkpoint")
    raise CheckpointError(f"{flag} {info.path}: a {info.task} checkpoint; --task {task} continues only from a "
                          f"{task} checkpoint")


def adopt_model_config(model: Mapping[str, Any], info: CheckpointInfo, user_keys: Iterable[str],
                       task: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model section, keys taken)``: the checkpoint's values for the keys the user's config
    does not set; every key of the checkpoint for the same task, else :data:`ENCODER_KEYS`."""
    user = set(user_keys)
    source = {**_BUILT_WITHOUT, **info.model_config}
    keys = [k for k in source if k != "num_classes"] if info.task == task else [k for k in ENCODER_KEYS if k in source]
    taken = {k: source[k] for k in keys if k not in user and model.get(k, object()) != source[k]}
    return {**model, **taken}, taken


def _encoder_differs(differences: Mapping[str, list[str]]) -> bool:
    """Whether any difference (``name: ...`` for shapes, else the name) is in the encoder."""
    return any(entry.split(":", 1)[0].startswith(ENCODER_PREFIX) for entries in differences.values()
               for entry in entries)


def init_from_checkpoint(module: nn.Module, ckpt: Mapping[str, Any], path: str | Path, task: str) -> InitReport:
    """Load the weights of checkpoint dict ``ckpt`` (read from ``path``) into the task module.

    Same task: every tensor, strictly, except that a classification or annotation head that
    does not fit (another class count or ``positions``) is left as initialised, with the
    encoder loaded. Another task (see :func:`check_init_task`): the tensors under
    :data:`ENCODER_PREFIX`, with the rest of the module left as initialised. Raises
    :class:`CheckpointError` naming the file and the first few parameters at fault.
    """
    path = Path(path)
    info = checkpoint_info(ckpt, path)
    check_init_task(info, task)
    own = module.state_dict()
    state = dict(ckpt["state_dict"])
    report = InitReport(path, info.task)
    if info.task == task:
        differences = state_differences(own, state)
        problems = fit_problems(differences)
        if not problems:
            module.load_state_dict(state)
            report.loaded = list(own)
            return report
        if task not in _FINE_TUNED or _encoder_differs(differences):
            raise CheckpointError(f"--init-from {path}: the weights do not fit the model of this run; {problems}")
        log.warning("--init-from %s: the %s checkpoint's head does not fit this run's model (%s: another number of "
                    "classes, readout or model.positions), so it is not reused", path, info.task, problems)
    encoder = {k: v for k, v in state.items() if k.startswith(ENCODER_PREFIX)}
    differences = state_differences({k: v for k, v in own.items() if k.startswith(ENCODER_PREFIX)}, encoder)
    if differences["shape"]:
        raise CheckpointError(f"--init-from {path}: the {info.task} checkpoint's encoder does not fit this run's "
                              f"model; shape mismatch: {name_list(differences['shape'])} (the model section's "
                              f"dim, depth, heads, ... are taken from the checkpoint unless --config or --set "
                              f"sets them)")
    module.load_state_dict(encoder, strict=False)
    report.loaded = [k for k in own if k in encoder]
    report.fresh = [k for k in own if k not in encoder]
    report.unused = [k for k in state if k not in own or not k.startswith(ENCODER_PREFIX)]
    heads = [k for k in report.fresh if not k.startswith(ENCODER_PREFIX)]
    if heads:
        log.warning("--init-from %s: %s encoder loaded (%d tensors); the %s head starts fresh: %s", path, info.task,
                    len(report.loaded), task, name_list(heads))
    if differences["missing"]:
        log.warning("--init-from %s: encoder tensors the checkpoint does not hold start fresh: %s", path,
                    name_list(differences["missing"]))
    extra = differences["unexpected"]
    if extra:
        log.warning("--init-from %s: encoder tensors of the checkpoint this model has no use for: %s", path,
                    name_list(extra))
    return report
