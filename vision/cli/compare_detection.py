"""A longseq YOLO-head model beside stock YOLO, on the same data and the same time budget.

Each model is trained by ``scripts/train_yolo_baseline.py`` (:mod:`vision.cli.train_yolo_baseline`)
in its own process (so peak memory is per model), then one table is printed: the best
epoch's mAP50 and mAP50-95 (the weights kept), the last epoch's mAP50-95, inference
images/s, training minutes without validation, epochs done (a fraction under a time
budget), the trained model's parameters, peak memory. Writes ``comparison.csv`` and
``predictions.png`` (ground truth and each model's detections on the same validation
image) in ``--out``. ``--data`` takes a YOLO ``data.yaml`` or a Pascal VOC folder, which
is converted once into ``<out>/data`` and shared by every run.

    python scripts/compare_detection.py                        # longseq hybrid ViT vs yolo11n, 1024², 30 min each
    python scripts/compare_detection.py --models configs/detection/longseq_vit_tiny_yolo.yaml yolo11s.yaml
    python scripts/compare_detection.py --img-size 64 --n-train 4 --n-val 2 --epochs 1 --time-minutes 0  # smoke

Installed, the command is ``longseq-compare-detection``. The flags under "passed on to
every run" (``--time-minutes``, ``--batch``, ``--config``...) go to every
``train_yolo_baseline`` run, with ``--img-size`` and ``--seed``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["COLUMNS", "DEFAULT_MODELS", "format_table", "main", "parser", "passed_on", "plot_predictions", "run_model",
           "write_csv"]

#: Each model trains in a fresh interpreter running this module.
TRAIN_MODULE = "vision.cli.train_yolo_baseline"
# The hybrid longseq_vit_digits (P3/P4 from its conv stem, P5 from the transformer) + YOLO11n
# neck/head has 2.95 M parameters: the stock model of similar size is yolo11n (2.6 M). It is the
# default because it is the best longseq 1024² detector (docs/detection.md); the plain pyramid version
# is configs/detection/longseq_vit_digits_yolo.yaml. (ViT-tiny + the same neck has 7.6 M,
# closest to yolo11s at 9.4 M.)
DEFAULT_MODELS = ["configs/detection/longseq_vit_hybrid_yolo.yaml", "yolo11n.yaml"]
COLUMNS = [
    ("model", "model", "{}"),
    ("map50", "mAP50", "{:.4f}"),
    ("map50_95", "mAP50-95", "{:.4f}"),
    ("best_epoch", "best epoch", "{:.2f}"),
    ("last_map50_95", "last mAP50-95", "{:.4f}"),
    ("infer_images_per_s", "img/s (infer)", "{:.2f}"),
    ("train_seconds", "train min", "{:.1f}"),
    ("epochs_done", "epochs", "{:.2f}"),
    ("params", "params (M)", "{:.2f}"),
    ("peak_rss_gb", "peak RSS GB", "{:.2f}"),
]
#: The flags of train_yolo_baseline that this command sets itself for every run.
SET_HERE = ("--model", "--data", "--project", "--name", "--summary-json", "--img-size", "--seed", "--print-config")


def run_model(model: str, data_yaml: Path, out: Path, forward: list[str]) -> dict[str, Any]:
    """Train and evaluate one model in a child process; return its summary."""
    name = Path(model).stem
    summary = out / f"{name}.json"
    cmd = [sys.executable, "-m", TRAIN_MODULE, "--model", model, "--data", str(data_yaml), "--project", str(out / "runs"),
           "--name", name, "--summary-json", str(summary), *forward]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, "YOLO_OFFLINE": "1"})
    return json.loads(summary.read_text())


def format_table(rows: list[dict[str, Any]]) -> str:
    """Fixed-width table of the summaries (params in millions, training time in minutes
    without validation; mAP of the best epoch, whose weights are kept, and of the last)."""
    cells = []
    for r in rows:
        vals = {**r, "params": r["params"] / 1e6, "train_seconds": r["train_seconds"] / 60, "model": Path(r["model"]).stem}
        cells.append([fmt.format(vals[k]) for k, _, fmt in COLUMNS])
    heads = [h for _, h, _ in COLUMNS]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    keys = [k for k, _, _ in COLUMNS] + ["last_map50", "last_epoch", "validation_seconds", "num_classes", "img_size",
                                         "peak_cuda_gb", "weights"]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def plot_predictions(rows: list[dict[str, Any]], data_yaml: Path, path: Path) -> None:
    """Ground truth and each model's detections (score >= 0.25) on the same validation image."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle
    from PIL import Image

    from vision.detection.yolo_format import load_data_yaml, scan_data_split, yolo_to_xyxy

    info = load_data_yaml(data_yaml)
    image_path = Path(rows[0]["prediction"]["image"])
    image = Image.open(image_path).convert("RGB")
    w, h = image.size
    samples, _ = scan_data_split(info, "val")
    gt = next(s for s in samples if s.image == image_path)
    panels = [("ground truth", yolo_to_xyxy(gt.boxes, w, h).tolist(), gt.labels.tolist(), [None] * len(gt.labels))]
    for r in rows:
        p = r["prediction"]
        panels.append((f"{Path(r['model']).stem} (mAP50 {r['map50']:.3f})", p["boxes"], p["classes"], p["scores"]))
    fig = Figure(figsize=(5 * len(panels), 5.4))  # no pyplot: nothing global, no display needed
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (title, boxes, classes, scores) in zip(axes[0], panels):
        ax.imshow(image)
        for (x0, y0, x1, y1), c, s in zip(boxes, classes, scores):
            color = "lime" if s is None else "red"
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=1.2))
            label = info["names"][c] + ("" if s is None else f" {s:.2f}")
            ax.text(x0, y0 - 2, label, color=color, fontsize=7, va="bottom")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def parser() -> argparse.ArgumentParser:
    from longseq.training.config import add_cadence_arguments
    from vision.cli.train_yolo_baseline import add_training_arguments

    p = argparse.ArgumentParser(prog="longseq-compare-detection", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="model YAMLs: longseq configs and stock ultralytics names")
    p.add_argument("--data", help="a YOLO data.yaml, a folder holding one, or a VOC folder (converted once into "
                   "<out>/data); default: generated scattered digits")
    p.add_argument("--val-fraction", type=float, default=0.2, help="VOC images held out for validation when the "
                   "folder has no ImageSets/Main/{train,val}.txt")
    p.add_argument("--img-size", type=int, default=1024, help="training and inference size (passed on)")
    p.add_argument("--n-train", type=int, default=512, help="generated training canvases")
    p.add_argument("--n-val", type=int, default=64, help="generated validation canvases")
    p.add_argument("--seed", type=int, default=0, help="data and training seed (passed on)")
    p.add_argument("--out", default="runs/detection/compare")
    runs = p.add_argument_group("passed on to every run (scripts/train_yolo_baseline.py)")
    runs.add_argument("--config", help="the runs' config YAML (default: configs/detection/train_yolo_baseline.yaml)")
    add_training_arguments(runs)
    add_cadence_arguments(runs)
    return p


def passed_on(args: argparse.Namespace, p: argparse.ArgumentParser | None = None) -> list[str]:
    """The ``train_yolo_baseline`` arguments every run gets: ``--img-size``, ``--seed`` and
    each flag of the "passed on" group that was given."""
    p = p or parser()
    argv = ["--img-size", str(args.img_size), "--seed", str(args.seed)]
    group = next(g for g in p._action_groups if g.title and g.title.startswith("passed on"))
    for action in group._group_actions:
        value = getattr(args, action.dest, None)
        if value is None:
            continue
        flag = action.option_strings[0]
        argv += [flag] if action.nargs == 0 else [flag, str(value)]
    return argv


def main(argv: list[str] | None = None) -> None:
    p = parser()
    args = p.parse_args(argv)
    from vision.detection.generate import make_scattered_digits_yolo
    from vision.detection.voc_folder import resolve_data

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # Generated (or converted) once here, so the runs share it instead of racing to write it.
    if args.data:
        from vision.detection.yolo_format import check_dataset

        try:  # an unusable folder fails here, in one line, before any model trains
            data_yaml = resolve_data(args.data, out, val_fraction=args.val_fraction, seed=args.seed)
            check_dataset(data_yaml)
        except (ValueError, OSError) as exc:
            p.error(f"--data {args.data}: {exc}")
    else:
        data_yaml = make_scattered_digits_yolo(img_size=args.img_size, n_train=args.n_train, n_val=args.n_val,
                                               seed=args.seed)
    forward = passed_on(args, p)
    rows = [run_model(m, data_yaml, out, forward) for m in args.models]

    write_csv(rows, out / "comparison.csv")
    plot_predictions(rows, data_yaml, out / "predictions.png")
    print(f"\nDetection on {data_yaml} at {args.img_size}²\n")
    print(format_table(rows))
    print(f"\nCSV {out / 'comparison.csv'}\nPNG {out / 'predictions.png'}")


if __name__ == "__main__":
    main()
