"""Benchmark longseq vision backbones beside timm ViT-S/16 and Swin-T at high resolution.

For each model, image side, mode (``train``: one SGD step on a cross-entropy loss;
``infer``: a no-grad forward) and precision (``fp32``, or ``bf16-mixed``: the forward
under CPU bf16 autocast, as Lightning's ``precision: bf16-mixed``, fp32 weights and
optimizer) at batch 1, a fresh subprocess measures the median
step time, images/s, peak RSS (so each row's memory is its own), the model FLOPs of the
step (``torch.utils.flop_counter``, forward x 3 for a training step) and the achieved
GFLOP/s. Writes ``bench_vision.csv`` and ``bench_vision.png`` to ``--out-dir``.

    python scripts/bench_vision.py                                  # full run (long: hours on CPU)
    python scripts/bench_vision.py --sizes 64 96 --repeats 1 --models longseq_vit_tiny vit_small_patch16_224
    python scripts/bench_vision.py --models longseq_vit_small vit_small_patch16_224 --sizes 2048 --modes train \
        --repeats 1 --no-flops --precisions fp32 bf16-mixed

A model name may end in ``:`` and a JSON object of ``timm.create_model`` keyword arguments,
e.g. the ``train_vit.py`` default model at batch 16:

    python scripts/bench_vision.py --sizes 512 --modes train --batch 16 --repeats 5 --no-flops \
        --models 'longseq_vit_digits:{"patch_size": 32, "mlp_ratio": 2.0, "embed_kwargs": {"first_stride": 4}}'

Installed, the command is ``longseq-bench-vision``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_MODELS", "FIELDS", "build", "main", "parser", "plot", "run_benchmark", "run_one", "step_flops",
           "worker"]

#: Each measurement runs in a fresh interpreter running this module with ``--worker``.
WORKER_MODULE = "vision.cli.bench_vision"
DEFAULT_MODELS = ["longseq_vit_small", "longseq_vit_small+dense", "vit_small_patch16_224",
                  "longseq_swin_tiny", "swin_tiny_patch4_window7_224"]
PRECISIONS = ("fp32", "bf16-mixed")
FIELDS = ["model", "size", "mode", "precision", "batch", "seconds", "images_per_s", "peak_rss_gb", "gflops", "gflops_per_s",
          "params_m", "cpu", "status"]


def build(name: str, size: int):
    """A timm model at ``size`` (timm's own models get ``img_size`` so their tables fit).

    ``longseq_vit_*`` global blocks default to ``"auto"`` (dense up to 4096 patches, BigBird
    above); ``longseq_vit_*+dense`` forces dense global blocks (ViTDet exactly) and
    ``longseq_vit_*+bigbird`` forces BigBird (blocks of 64 patches) at every size.
    ``name:{json}`` adds keyword arguments, e.g. ``longseq_vit_digits:{"patch_size": 32}``.
    """
    import timm

    import vision  # noqa: F401  (registers the longseq models)

    name, _, extra = name.partition(":")
    try:
        extra_kwargs = json.loads(extra) if extra else {}
    except json.JSONDecodeError as e:
        raise ValueError(f"model kwargs after ':' must be a JSON object, got {extra!r}: {e}") from e
    if not isinstance(extra_kwargs, dict):
        raise ValueError(f"model kwargs after ':' must be a JSON object, got {extra!r}")
    base, _, variant = name.partition("+")
    kwargs: dict[str, Any] = {"pretrained": False, "num_classes": 10}
    if variant in ("bigbird", "dense") and base.startswith("longseq_vit"):
        from longseq.patterns import BigBird, Dense

        kwargs["global_pattern"] = Dense() if variant == "dense" else BigBird(
            block=64, window_blocks=1, global_blocks=1, random_blocks=2)
    elif variant:
        raise ValueError(f"unknown model variant {variant!r} in {name!r} (longseq_vit_*+dense or +bigbird)")
    if not base.startswith("longseq_"):
        kwargs["img_size"] = size
    return timm.create_model(base, **{**kwargs, **extra_kwargs})


def step_flops(model, x, train: bool) -> float:
    """Model FLOPs of one step: counted forward FLOPs, x3 for forward + backward.

    PyTorch's counter has no formula for the CPU flash-attention op that SDPA dispatches
    to here, so attention would count for timm's Swin (explicit matmuls) and not for
    SDPA users (timm's ViT, the longseq ones): the same formula as for the GPU kernels is added.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_flash_flops(q_shape, k_shape, v_shape, *args, **kwargs) -> int:
        return sdpa_flop_count(q_shape, k_shape, v_shape)

    mapping = {}
    cpu_flash = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_flash is not None:
        mapping[cpu_flash] = cpu_flash_flops
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        model(x)
    return counter.get_total_flops() * (3 if train else 1)


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one (model, size, mode) measurement in this process; returns a CSV row."""
    import torch

    from longseq.hardware import cpu_description, peak_rss_bytes

    precision = spec.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    size, batch, train = spec["size"], spec["batch"], spec["mode"] == "train"
    model = build(spec["model"], size).train(train)
    x = torch.randn(batch, 3, size, size)
    y = torch.zeros(batch, dtype=torch.long)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3) if train else None
    flops = step_flops(model, x, train) if spec["flops"] else float("nan")
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed")

    def step() -> None:
        if train:
            with autocast:
                loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        else:
            with torch.no_grad(), autocast:
                model(x)

    step()  # warm-up: allocations, plans, caches
    times = []
    for _ in range(spec["repeats"]):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    return {
        "model": spec["model"], "size": size, "mode": spec["mode"], "precision": precision, "batch": batch,
        "seconds": seconds, "images_per_s": batch / seconds,
        "peak_rss_gb": peak_rss_bytes() / 2**30,
        "gflops": flops / 1e9, "gflops_per_s": flops / 1e9 / seconds,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6, "cpu": cpu_description(), "status": "ok",
    }


def run_one(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Measure in a fresh subprocess so peak RSS belongs to this row alone."""
    cmd = [sys.executable, "-m", WORKER_MODULE, "--worker", json.dumps(spec)]
    base = {k: spec.get(k) for k in ("model", "size", "mode", "precision", "batch")}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**base, "status": f"timeout>{timeout:.0f}s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1][:120]
        status = "oom-killed" if proc.returncode in (-9, 137) else f"error: {tail}"
        return {**base, "status": status}
    return json.loads(lines[-1])


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.figure import Figure

    ok = [r for r in rows if r.get("status") == "ok"]
    modes = sorted({r["mode"] for r in ok}) or ["train"]
    fig = Figure(figsize=(6 * len(modes), 8))  # no pyplot: nothing global, no display needed
    axes = fig.subplots(2, len(modes), squeeze=False)
    for col, mode in enumerate(modes):
        for row_i, (key, label) in enumerate([("seconds", "seconds / step"), ("peak_rss_gb", "peak RSS (GB)")]):
            ax = axes[row_i][col]
            for model, precision in sorted({(r["model"], r.get("precision", "fp32")) for r in ok}):
                pts = sorted((r["size"], r[key]) for r in ok if r["model"] == model and r["mode"] == mode
                             and r.get("precision", "fp32") == precision)
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=model if precision == "fp32" else f"{model} ({precision})")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("image side (px), batch 1")
            ax.set_ylabel(label)
            ax.set_title(f"{mode}: {label}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    machine = next((r["cpu"] for r in ok if r.get("cpu")), "")
    if machine:
        fig.suptitle(machine, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="longseq-bench-vision", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    p.add_argument("--sizes", nargs="+", type=int, default=[512, 1024, 2048])
    p.add_argument("--modes", nargs="+", default=["train", "infer"], choices=["train", "infer"])
    p.add_argument("--precisions", nargs="+", default=["fp32"], choices=PRECISIONS,
                   help="fp32, and/or bf16-mixed (forward under CPU bf16 autocast)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="timed steps after one warm-up (median reported)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per measurement")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count (saves one forward)")
    p.add_argument("--out-dir", default="bench_results/vision")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


def run_benchmark(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every (size, mode, model) measurement, each in its own process; writes the CSV and plot."""
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        for mode in args.modes:
            for precision in args.precisions:
                for model in args.models:
                    spec = dict(model=model, size=size, mode=mode, precision=precision, batch=args.batch,
                                repeats=args.repeats, threads=args.threads, flops=not args.no_flops)
                    row = run_one(spec, args.timeout)
                    rows.append(row)
                    head = f"{model:32s} {size:5d} {mode:5s} {precision:10s}"
                    if row.get("status") == "ok":
                        print(f"{head} {row['seconds']:8.3f} s  {row['images_per_s']:7.2f} img/s "
                              f"{row['peak_rss_gb']:6.2f} GB  {row['gflops']:9.1f} GFLOP  "
                              f"{row['gflops_per_s']:7.1f} GFLOP/s", flush=True)
                    else:
                        print(f"{head} {row['status']}", flush=True)
    with open(out / "bench_vision.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) and math.isfinite(v) else v)
                             for k, v in row.items() if k in FIELDS})
    plot(rows, out / "bench_vision.png")
    print(f"machine: {next((r['cpu'] for r in rows if r.get('cpu')), 'unknown (no measurement finished)')}")
    print(f"wrote {out / 'bench_vision.csv'} and {out / 'bench_vision.png'}")
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    run_benchmark(args)


if __name__ == "__main__":
    main()
