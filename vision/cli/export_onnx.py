"""Export a longseq backbone to ONNX (symbolic batch, height and width), check it, or time it.

    python scripts/export_onnx.py --model longseq_vit_small --out onnx/vit_small.onnx
    python scripts/export_onnx.py --model longseq_swin_tiny --features --out onnx/swin_tiny_features.onnx
    python scripts/export_onnx.py --model longseq_vit_small --size 1024 --bench
    python scripts/export_onnx.py --model longseq_swin_tiny --size 1024 --bench

Without ``--bench`` the model is exported to ``--out`` and onnxruntime is checked against
PyTorch (max absolute difference, 1e-4) at two sizes, plus ``--size`` when given.
``--features`` exports timm's ``features_only`` model: one output per feature map, named
``features_0``, ``features_1``, ... (otherwise the one output is ``output``). Weights up
to 1.8 GB are stored inside the ``.onnx`` file; larger models write ``<out>.data`` beside
it, which must travel with the ``.onnx`` file.

``--bench`` exports, then runs PyTorch and onnxruntime at ``--size`` x ``--size`` (batch 1),
each in its own process, and prints seconds per image and peak RSS of each, the export's
time and peak RSS, and their outputs' max difference (:mod:`vision.onnx_bench`).
The weights are random (seeded): speed and memory do not depend on them.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

__all__ = ["main", "parser"]


def _size_pair(text: str) -> tuple[int, int]:
    h, _, w = text.partition(",")
    try:
        return int(h), int(w or h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H,W (or one side), got {text!r}") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="export_onnx", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="longseq_vit_small", help="timm model name (longseq_* or any timm model)")
    p.add_argument("--num-classes", type=int, default=0, help="classifier outputs (0: pooled features)")
    p.add_argument("--features", action="store_true", help="export the feature maps (timm features_only)")
    p.add_argument("--model-kwargs", type=json.loads, default={},
                   help='extra timm.create_model arguments as JSON, e.g. \'{"depth": 6}\'')
    p.add_argument("--out", help="ONNX file (default: onnx/<model>.onnx)")
    p.add_argument("--sample-size", type=_size_pair, default=(256, 320), metavar="H,W",
                   help="image size traced at export (any size runs afterwards)")
    p.add_argument("--check-sizes", type=_size_pair, nargs="*", default=[(256, 320), (320, 256)], metavar="H,W",
                   help="sizes at which onnxruntime is checked against PyTorch (none: no check)")
    p.add_argument("--size", type=int, help="also check at size x size; with --bench, the benchmarked size")
    p.add_argument("--bench", action="store_true", help="time onnxruntime against PyTorch at --size (default 1024)")
    p.add_argument("--repeats", type=int, default=3, help="--bench: timed runs after one warm-up (median)")
    p.add_argument("--threads", type=int, help="--bench: CPU threads (default: all cores)")
    p.add_argument("--seed", type=int, default=0, help="weight and input seed")
    return p


def _model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs = {"num_classes": args.num_classes, **args.model_kwargs}
    if args.features:
        kwargs["features_only"] = True
    return kwargs


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    out = Path(args.out or f"onnx/{args.model}{'_features' if args.features else ''}.onnx")
    if args.bench:
        from vision.onnx_bench import bench_onnx, format_bench

        kwargs = _model_kwargs(args)
        row = bench_onnx(args.model, args.size or 1024, out, repeats=args.repeats, threads=args.threads,
                         num_classes=kwargs.pop("num_classes"), model_kwargs=kwargs,
                         sample_side=min(args.sample_size), seed=args.seed)
        print(format_bench(row))
        print(json.dumps(row))
        return

    import timm
    import torch

    import vision  # noqa: F401  (registers the longseq_* names)
    from vision.export import check_onnx, export_onnx

    torch.manual_seed(args.seed)
    model = timm.create_model(args.model, **_model_kwargs(args)).eval()
    export_onnx(model, out, sample_size=args.sample_size)
    sizes = list(args.check_sizes) + ([(args.size, args.size)] if args.size else [])
    data = Path(f"{out}.data")
    print(f"ONNX {out}" + (f" (weights in {data})" if data.exists() else ""))
    if sizes:
        diffs = check_onnx(model, out, sizes, seed=args.seed)
        for (h, w), d in zip(sizes, diffs):
            print(f"  {h}x{w}: max |onnxruntime - PyTorch| {d:.2e}")


if __name__ == "__main__":
    main()
