"""Export a longseq backbone, or a classifier trained with ``scripts/train_vit.py``, to ONNX
(symbolic batch, height and width), check it, or time it.

    python scripts/export_onnx.py --model longseq_vit_small --out onnx/vit_small.onnx
    python scripts/export_onnx.py --model longseq_swin_tiny --features --out onnx/swin_tiny_features.onnx
    python scripts/export_onnx.py --model runs/train_vit/checkpoints/last.ckpt --out onnx/train_vit.onnx
    python scripts/export_onnx.py --model longseq_vit_small --size 1024 --bench
    python scripts/export_onnx.py --model longseq_swin_tiny --size 1024 --bench

``--model`` is a timm model name (``longseq_*`` or any timm model; weights random,
seeded) or a checkpoint written by ``scripts/train_vit.py`` (a ``.ckpt`` file): its trained
classifier, rebuilt from the model name, arguments and classes the checkpoint records
(``--num-classes`` and ``--model-kwargs`` are the checkpoint's then; ``--out`` defaults to
the checkpoint's path with ``.onnx``).

Without ``--bench`` the model is exported to ``--out`` and onnxruntime is checked against
PyTorch (max absolute difference, 1e-4) at two sizes, plus ``--size`` when given; a
difference above that is an error. Every side must be at least the model's
``min_export_side`` (32 for ViT-16, 225 for Swin-T); a smaller one is refused before
anything is exported. ``--features`` exports timm's ``features_only`` model (of a
checkpoint: its trained backbone's feature maps): one output per feature map, named
``features_0``, ``features_1``, ... (otherwise the one output is ``output``). Weights up
to 1.8 GB are stored inside the ``.onnx`` file; larger models write ``<out>.data`` beside
it, which must travel with the ``.onnx`` file. The exporter's own INFO logs (one line per
graph pass) are shown with ``--verbose`` only.

``--bench`` exports, then runs PyTorch and onnxruntime at ``--size`` x ``--size`` (batch 1),
each in its own process, and prints seconds per image and peak RSS of each, the export's
time and peak RSS, and their outputs' max difference (:mod:`vision.onnx_bench`).
The weights are random (seeded), a checkpoint's architecture included: speed and memory
do not depend on them.

Problems with the flags, the model name, the checkpoint or the sizes, and a failed
check, print one line, ``longseq-export-onnx: error: <flag or file>: <what is wrong>``,
and exit with status 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from longseq.training.errors import UserError, run_cli

if TYPE_CHECKING:
    from torch import nn

__all__ = ["EXPORTER_LOGGERS", "PROG", "main", "parser"]

PROG = "longseq-export-onnx"

#: Loggers of the ONNX exporter (torch.onnx, onnxscript's optimizer and rewriter, onnx_ir's
#: passes) that report every graph pass at INFO: over a thousand lines for a ViT-S, which
#: bury the result. Kept at WARNING unless ``--verbose``.
EXPORTER_LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx")


def _size_pair(text: str) -> tuple[int, int]:
    h, _, w = text.partition(",")
    try:
        return int(h), int(w or h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H,W (or one side), got {text!r}") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="longseq_vit_small",
                   help="timm model name (longseq_* or any timm model), or a scripts/train_vit.py checkpoint (.ckpt)")
    p.add_argument("--num-classes", type=int, help="classifier outputs (default 0: pooled features; "
                   "a checkpoint's: its classes)")
    p.add_argument("--features", action="store_true", help="export the feature maps (timm features_only)")
    p.add_argument("--model-kwargs", type=json.loads,
                   help='extra timm.create_model arguments as JSON, e.g. \'{"depth": 6}\' (not with a checkpoint)')
    p.add_argument("--out", help="ONNX file (default: onnx/<model>.onnx; a checkpoint's path with .onnx)")
    p.add_argument("--sample-size", type=_size_pair, default=(256, 320), metavar="H,W",
                   help="image size traced at export (any size runs afterwards)")
    p.add_argument("--check-sizes", type=_size_pair, nargs="*", default=[(256, 320), (320, 256)], metavar="H,W",
                   help="sizes at which onnxruntime is checked against PyTorch (none: no check)")
    p.add_argument("--size", type=int, help="also check at size x size; with --bench, the benchmarked size")
    p.add_argument("--bench", action="store_true", help="time onnxruntime against PyTorch at --size (default 1024)")
    p.add_argument("--repeats", type=int, default=3, help="--bench: timed runs after one warm-up (median)")
    p.add_argument("--threads", type=int, help="--bench: CPU threads (default: all cores)")
    p.add_argument("--seed", type=int, default=0, help="weight and input seed")
    p.add_argument("--verbose", action="store_true",
                   help="show the exporter's INFO logs (onnx_ir, onnxscript, torch.onnx: one line per graph pass)")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    return p


@dataclass
class _Source:
    """What to export: a timm name with its arguments, or a train_vit checkpoint's classifier."""

    name: str
    num_classes: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    checkpoint: Path | None = None


def _is_checkpoint(value: str) -> bool:
    """A ``--model`` value that names a file rather than a timm model."""
    return value.endswith(".ckpt") or Path(value).expanduser().is_file()


def _either(names: list[str]) -> str:
    """``'a'``, ``'a' or 'b'``, ``'a', 'b' or 'c'``."""
    quoted = [repr(n) for n in names]
    return " or ".join(filter(None, [", ".join(quoted[:-1]), quoted[-1]]))


def _unknown_model(name: str) -> UserError | None:
    """Why ``name`` is no timm model (the close longseq names first), or None."""
    import timm

    from vision.cli._shared import timm_name_error

    problem = timm_name_error(name)
    if problem is None:
        return None
    close = difflib.get_close_matches(name, timm.list_models("longseq_*"), n=3)
    if close:
        return UserError(f"--model: unknown model {name!r} (did you mean {_either(close)}?)")
    return UserError(f"--model: {problem}")


def _source(args: argparse.Namespace) -> _Source:
    """The ``--model`` to export, checked: a known timm name, or a readable train_vit checkpoint
    whose hyper-parameters name the model (``--num-classes`` and ``--model-kwargs`` refused there)."""
    if not _is_checkpoint(args.model):
        if (error := _unknown_model(args.model)) is not None:
            raise error
        return _Source(args.model, 0 if args.num_classes is None else args.num_classes, dict(args.model_kwargs or {}))
    from vision.cli.checkpoints import read_training_checkpoint
    from vision.cli.train_vit import PROG as TRAIN_PROG

    path = Path(args.model).expanduser()
    hparams = read_training_checkpoint(path, "--model", TRAIN_PROG).get("hyper_parameters") or {}
    name = hparams.get("backbone_name")
    if not isinstance(name, str) or "num_classes" not in hparams:
        raise UserError(f"--model: {path}: not a classifier checkpoint of {TRAIN_PROG} "
                        "(its hyper-parameters name no backbone_name)")
    for flag, value in (("--num-classes", args.num_classes), ("--model-kwargs", args.model_kwargs)):
        if value is not None:
            raise UserError(f"{flag}: not with a checkpoint (--model {path} rebuilds its own {name} "
                            f"with {hparams['num_classes']} classes)")
    return _Source(name, int(hparams["num_classes"]), dict(hparams.get("backbone_kwargs") or {}), path)


def _trained_model(source: _Source, features: bool) -> nn.Module:
    """The checkpoint's classifier (``ImageClassificationTask.load_from_checkpoint``), or with
    ``features`` timm's ``features_only`` model of the same backbone holding its trained weights."""
    import timm

    from vision.tasks.classification import ImageClassificationTask

    try:
        backbone = ImageClassificationTask.load_from_checkpoint(source.checkpoint, map_location="cpu").backbone
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:  # weights or arguments that no longer fit
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        raise UserError(f"--model: {source.checkpoint}: cannot rebuild its {source.name} "
                        f"({type(exc).__name__}: {first})") from None
    if not features:
        return backbone
    model = timm.create_model(source.name, features_only=True, **source.kwargs)
    # timm's FeatureGetterNet wraps the model (as .model); FeatureListNet holds its modules under their own names
    result = getattr(model, "model", model).load_state_dict(backbone.state_dict(), strict=False)
    if result.missing_keys:
        raise UserError(f"--features: {source.checkpoint}: the feature model of {source.name} needs weights the "
                        f"checkpoint lacks: {result.missing_keys[:3]}")
    return model


def _build(source: _Source, features: bool, seed: int) -> nn.Module:
    """The model to export (eval mode): the trained one of a checkpoint, else timm's, seeded."""
    import timm
    import torch

    import vision  # noqa: F401  (registers the longseq_* names)

    if source.checkpoint is not None:
        return _trained_model(source, features).eval()
    torch.manual_seed(seed)
    kwargs = {"num_classes": source.num_classes, **source.kwargs, **({"features_only": True} if features else {})}
    try:
        return timm.create_model(source.name, **kwargs).eval()
    except TypeError as exc:  # an argument the model does not take
        if not source.kwargs:
            raise
        raise UserError(f"--model-kwargs: {source.name}: {exc}") from None


def _check_sides(args: argparse.Namespace, side: int, name: str) -> None:
    """Every size the command will trace or run is at least ``side`` (the model's
    ``min_export_side``): a smaller one would fail the export or break the graph's shape rules."""
    sizes = [("--size", [(args.size, args.size)] if args.size else [])]
    if not args.bench:  # --bench traces at max(--sample-size, the smallest side) itself
        sizes += [("--sample-size", [args.sample_size]), ("--check-sizes", args.check_sizes)]
    for flag, pairs in sizes:
        for h, w in pairs:
            if min(h, w) < side:
                raise UserError(f"{flag}: {h}x{w} is below the smallest side {name} exports at: {side} "
                                "(min_export_side); use sides of at least that")


@contextlib.contextmanager
def _exporter_logs(verbose: bool) -> Iterator[None]:
    """:data:`EXPORTER_LOGGERS` at WARNING for the duration (unless ``verbose``), then as they were."""
    loggers = [logging.getLogger(name) for name in EXPORTER_LOGGERS]
    levels = [lg.level for lg in loggers]
    if not verbose:
        for lg in loggers:
            lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _default_out(args: argparse.Namespace, source: _Source) -> Path:
    suffix = ("_features" if args.features else "") + ("_bench" if args.bench else "")
    if source.checkpoint is not None:  # the bench exports random weights: never over the trained model's file
        return source.checkpoint.with_name(f"{source.checkpoint.stem}{suffix}.onnx")
    return Path(f"onnx/{source.name}{suffix}.onnx")


def _main(argv: list[str] | None) -> None:
    args = parser().parse_args(argv)
    source = _source(args)
    out = Path(args.out) if args.out else _default_out(args, source)
    with _exporter_logs(args.verbose):
        model = _build(source, args.features, args.seed)
        from vision.export import OnnxCheckError, check_onnx, export_onnx, min_export_side

        _check_sides(args, min_export_side(model), source.name)
        if args.bench:
            from vision.onnx_bench import bench_onnx, format_bench

            kwargs = {**source.kwargs, **({"features_only": True} if args.features else {})}
            row = bench_onnx(source.name, args.size or 1024, out, repeats=args.repeats, threads=args.threads,
                             num_classes=source.num_classes, model_kwargs=kwargs,
                             sample_side=min(args.sample_size), seed=args.seed)
            print(format_bench(row))
            print(json.dumps(row))
            return
        export_onnx(model, out, sample_size=args.sample_size)
        sizes = list(args.check_sizes) + ([(args.size, args.size)] if args.size else [])
        data = Path(f"{out}.data")
        what = ""
        if source.checkpoint is not None:
            trained = f"the trained backbone of {source.name}" if args.features else \
                f"{source.name}, {source.num_classes} classes"
            what = f" ({trained}, from {source.checkpoint})"
        print(f"ONNX {out}{what}" + (f" (weights in {data})" if data.exists() else ""))
        if not sizes:
            return
        try:
            diffs = check_onnx(model, out, sizes, seed=args.seed)
        except OnnxCheckError as exc:
            raise UserError(f"{out}: onnxruntime check failed: {exc}") from None
        for (h, w), d in zip(sizes, diffs):
            print(f"  {h}x{w}: max |onnxruntime - PyTorch| {d:.2e}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``longseq-export-onnx``): see the module docstring."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run_cli(_main, argv, prog=PROG)


if __name__ == "__main__":
    main()
