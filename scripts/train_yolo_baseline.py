"""Train an ultralytics YOLO model from its YAML on a detection set, within a time budget.

Default: stock ``yolo11n.yaml`` (built from its YAML; no pretrained weights, nothing
downloaded) on the scattered-digits detection set at 1024 x 1024 (512 train / 64 val
canvases with 3-10 digits each, generated offline and cached on first use), for 30 minutes.
The same script trains our models: pass a longseq model YAML, e.g.
``--model configs/detection/longseq_vit_tiny_yolo.yaml`` (:func:`register` is always called).

    python scripts/train_yolo_baseline.py                                  # yolo11n, 1024², 30 min
    python scripts/train_yolo_baseline.py --model yolo11s.yaml --time-minutes 60
    python scripts/train_yolo_baseline.py --model configs/detection/longseq_vit_tiny_yolo.yaml
    python scripts/train_yolo_baseline.py --data path/to/data.yaml --img-size 640
    python scripts/train_yolo_baseline.py --img-size 64 --n-train 4 --n-val 2 --epochs 1 --time-minutes 0  # smoke

Prints one summary (mAP50, mAP50-95, inference images/s, training time, parameters, peak
memory) and writes it as ``summary.json`` in the run folder (``--summary-json`` to choose),
with the predictions on the first validation image, which ``scripts/compare_detection.py``
draws. ``--config`` reads a YAML whose keys are the parameters of :func:`train_yolo`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

# Offline before ultralytics is imported: it checks connectivity and settings at import.
os.environ.setdefault("YOLO_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

import torch  # noqa: E402
import yaml  # noqa: E402

from vision.detection.generate import make_scattered_digits_yolo  # noqa: E402
from vision.detection.yolo_format import check_dataset, load_data_yaml  # noqa: E402


def peak_memory_gb(device: str) -> dict[str, float]:
    """Peak resident memory of this process (and peak CUDA allocation when used), in GB."""
    out = {"peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}  # KiB on Linux
    if device != "cpu" and torch.cuda.is_available():
        out["peak_cuda_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def inference_speed(model: Any, images: list[Path], img_size: int, device: str, n: int = 16) -> float:
    """Images per second of ``model.predict`` at batch 1 (pre/post-processing included), after one warm-up."""
    images = images[: n + 1]
    model.predict(str(images[0]), imgsz=img_size, device=device, verbose=False)
    t0 = time.perf_counter()
    for p in images[1:] or images:
        model.predict(str(p), imgsz=img_size, device=device, verbose=False)
    return len(images[1:] or images) / (time.perf_counter() - t0)


def train_yolo(
    model: str = "yolo11n.yaml",
    data: str | None = None,
    img_size: int = 1024,
    n_train: int = 512,
    n_val: int = 64,
    seed: int = 0,
    time_minutes: float = 30.0,
    epochs: int = 1000,
    batch: int = 4,
    workers: int = 2,
    device: str = "cpu",
    threads: int | None = None,
    project: str = "runs/detection",
    name: str | None = None,
    summary_json: str | None = None,
    plots: bool = False,
    fliplr: float = 0.0,
    amp: bool = False,
    optimizer: str = "AdamW",
    lr0: float = 0.001,
    nbs: int | None = None,
    warmup_epochs: float = 0.25,
) -> dict[str, Any]:
    """Train ``model`` (an ultralytics YAML name or path) and return its summary.

    Args:
        model: stock YAML (``yolo11n.yaml``, ``yolov8s.yaml``...) or a path (our configs).
        data: a YOLO ``data.yaml``; None generates the scattered-digits set (``img_size``,
            ``n_train``, ``n_val``, ``seed``).
        img_size: training and evaluation image size.
        time_minutes: training budget (ultralytics' ``time``); 0 = no budget, ``epochs`` only.
        epochs: epoch cap (the budget normally stops training first).
        batch, workers, device: ultralytics settings.
        threads: torch CPU threads (default: all cores; ultralytics would use cores - 1).
        project, name: run folder ``project/name`` (name defaults to the model's stem).
        summary_json: where to write the summary (default ``<run>/summary.json``).
        plots: let ultralytics draw its training plots.
        fliplr: horizontal-flip probability; 0 by default because a mirrored digit is not
            the same digit (ultralytics' default is 0.5).
        amp: mixed precision on a GPU. Off by default: ultralytics' AMP self-check downloads
            a pretrained model, which an offline machine cannot do.
        optimizer, lr0: ultralytics' optimizer and initial learning rate. Explicit because
            ultralytics' ``"auto"`` choice counts iterations from the epoch cap, which is a
            placeholder under a time budget (with one step per batch, 1000 epochs of 128
            batches would make it pick its SGD variant at lr 0.01).
        nbs: ultralytics' nominal batch size; gradients accumulate over ``nbs / batch``
            batches. None = ``batch``: one optimizer step per batch. Ultralytics' default
            (64) with batch 4 means 16 batches per step, a few dozen steps in 30 CPU
            minutes at 1024², too few for any model trained from scratch to learn.
        warmup_epochs: learning-rate warm-up. Ultralytics' default (3 epochs) is longer
            than a 30-minute CPU budget at 1024², so the rate would never reach ``lr0``.
    """
    import ultralytics.utils.torch_utils as ul_torch
    from ultralytics import YOLO

    from vision.integrations.ultralytics import register

    threads = threads or os.cpu_count() or 1
    ul_torch.NUM_THREADS = threads  # select_device() resets torch threads to this on CPU
    torch.set_num_threads(threads)
    register()

    data_yaml = Path(data) if data else make_scattered_digits_yolo(img_size=img_size, n_train=n_train, n_val=n_val, seed=seed)
    report = check_dataset(data_yaml)
    for line in report.lines():
        print(f"bad labels: {line}")
    info = load_data_yaml(data_yaml)
    name = name or Path(model).stem

    yolo = YOLO(model)
    params = sum(p.numel() for p in yolo.model.parameters())
    t0 = time.perf_counter()
    yolo.train(
        data=str(data_yaml),
        imgsz=img_size,
        epochs=epochs,
        time=time_minutes / 60 if time_minutes > 0 else None,
        batch=batch,
        workers=workers,
        device=device,
        project=str(Path(project).resolve()),
        name=name,
        exist_ok=True,
        plots=plots,
        fliplr=fliplr,
        amp=amp and device != "cpu",
        optimizer=optimizer,
        lr0=lr0,
        nbs=nbs or batch,
        warmup_epochs=warmup_epochs,
        seed=seed,
        pretrained=False,
        verbose=False,
    )
    train_seconds = time.perf_counter() - t0
    trainer = yolo.trainer
    weights = Path(trainer.best if Path(trainer.best).is_file() else trainer.last)

    best = YOLO(str(weights))
    metrics = best.val(
        data=str(data_yaml), imgsz=img_size, batch=batch, device=device, plots=False, verbose=False,
        project=str(trainer.save_dir), name="val", exist_ok=True,  # keep its folder inside the run
    )
    val_images = sorted((Path(info["path"]) / info["val"]).iterdir())
    speed = inference_speed(best, val_images, img_size, device)
    pred = best.predict(str(val_images[0]), imgsz=img_size, device=device, conf=0.25, verbose=False)[0]
    summary = {
        "model": model,
        "params": params,
        "img_size": img_size,
        "data": str(data_yaml),
        "epochs_done": int(trainer.epoch) + 1,
        "train_seconds": train_seconds,
        "map50": float(metrics.box.map50),
        "map50_95": float(metrics.box.map),
        "infer_images_per_s": speed,
        **peak_memory_gb(device),
        "weights": str(weights),
        "bad_labels": report.count,
        "recipe": {"batch": batch, "nbs": nbs or batch, "optimizer": optimizer, "lr0": lr0,
                   "warmup_epochs": warmup_epochs, "time_minutes": time_minutes, "fliplr": fliplr},
        "prediction": {
            "image": str(val_images[0]),
            "boxes": pred.boxes.xyxy.tolist(),
            "classes": pred.boxes.cls.int().tolist(),
            "scores": pred.boxes.conf.tolist(),
            "names": info["names"],
        },
    }
    out = Path(summary_json) if summary_json else Path(trainer.save_dir) / "summary.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1))
    summary["summary_json"] = str(out)
    return summary


def print_summary(s: dict[str, Any]) -> None:
    print(
        f"\n{s['model']}: {s['params'] / 1e6:.2f} M params, {s['epochs_done']} epoch(s) in {s['train_seconds'] / 60:.1f} min\n"
        f"  mAP50 {s['map50']:.4f}  mAP50-95 {s['map50_95']:.4f}  inference {s['infer_images_per_s']:.2f} img/s "
        f"at {s['img_size']}²  peak RSS {s['peak_rss_gb']:.2f} GB"
        + (f"  peak CUDA {s['peak_cuda_gb']:.2f} GB" if "peak_cuda_gb" in s else "")
        + f"\n  weights {s['weights']}\n  summary {s['summary_json']}"
    )


def parse_args(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML with train_yolo() parameters; explicit flags override it")
    p.add_argument("--model", help="ultralytics model YAML name or path (default yolo11n.yaml)")
    p.add_argument("--data", help="YOLO data.yaml (default: generated scattered digits)")
    p.add_argument("--img-size", type=int)
    p.add_argument("--n-train", type=int)
    p.add_argument("--n-val", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--time-minutes", type=float, help="training budget in minutes (0: epochs only)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--workers", type=int)
    p.add_argument("--device")
    p.add_argument("--threads", type=int)
    p.add_argument("--project")
    p.add_argument("--name")
    p.add_argument("--summary-json")
    p.add_argument("--plots", action="store_true", default=None)
    p.add_argument("--fliplr", type=float)
    p.add_argument("--amp", action="store_true", default=None, help="mixed precision on GPU (needs network once)")
    p.add_argument("--optimizer", help="ultralytics optimizer (default AdamW)")
    p.add_argument("--lr0", type=float, help="initial learning rate (default 0.001)")
    p.add_argument("--nbs", type=int, help="nominal batch size for gradient accumulation (default: --batch, no accumulation)")
    p.add_argument("--warmup-epochs", type=float, help="learning-rate warm-up in epochs (default 0.25)")
    args = vars(p.parse_args(argv))
    config = args.pop("config")
    kwargs = load_config(config) if config else {}
    kwargs.update({k: v for k, v in args.items() if v is not None})
    return kwargs


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML of :func:`train_yolo` parameters, rejecting unknown keys."""
    cfg = yaml.safe_load(Path(path).read_text()) or {}
    known = set(inspect.signature(train_yolo).parameters)
    unknown = set(cfg) - known
    if unknown:
        raise ValueError(f"config {path}: unknown key(s) {sorted(unknown)}; train_yolo() takes {sorted(known)}")
    return cfg


if __name__ == "__main__":
    print_summary(train_yolo(**parse_args()))
