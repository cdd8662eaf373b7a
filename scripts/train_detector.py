"""Train a torchvision detector (Faster R-CNN, RetinaNet, FCOS) on a longseq backbone with Lightning.

Default: ``longseq_vit_tiny`` + simple feature pyramid + FPN + Faster R-CNN on the
scattered-digits detection set at 1024 x 1024 (generated offline, cached).

    python scripts/train_detector.py                                        # Faster R-CNN, 1024², 1 epoch
    python scripts/train_detector.py --backbone longseq_swin_tiny --detector retinanet --epochs 5
    python scripts/train_detector.py --data path/to/data.yaml --img-size 800
    python scripts/train_detector.py --img-size 2048 --batch-size 2 --max-steps 3   # memory check at 2048²
    python scripts/train_detector.py --img-size 64 --n-train 4 --n-val 2 --max-steps 2   # smoke

Prints a summary (val mAP50 and mAP50-95, training images/s, peak memory, checkpoint);
the checkpoint reloads with ``DetectionModule.load_from_checkpoint(path, backbone=MultiScaleBackbone(...))``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

import lightning as L  # noqa: E402
from lightning.pytorch.callbacks import Callback  # noqa: E402

import vision  # noqa: E402,F401  (registers the longseq backbones with timm)
from vision.detection.lightning import DetectionModule, YoloDataModule  # noqa: E402
from vision.detection.pyramid import MultiScaleBackbone  # noqa: E402
from vision.detection.torchvision_detectors import DETECTORS  # noqa: E402


class Throughput(Callback):
    """Training images per second over training batches (the first, warm-up batch excluded)."""

    def __init__(self) -> None:
        self.images, self.seconds, self.seen = 0, 0.0, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen += 1
        if self.seen > 1:
            self.seconds += time.perf_counter() - self._t0
            self.images += len(batch[0])

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds else float("nan")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="longseq_vit_tiny", help="timm model name (longseq_* or any timm backbone)")
    p.add_argument("--channels", type=int, nargs=3, default=[128, 128, 128], help="pyramid channels at strides 8/16/32")
    p.add_argument("--detector", choices=DETECTORS, default="fasterrcnn")
    p.add_argument("--fpn-channels", type=int, default=128)
    p.add_argument("--data", help="YOLO data.yaml (default: generated scattered digits)")
    p.add_argument("--img-size", type=int, default=1024)
    p.add_argument("--n-train", type=int, default=512)
    p.add_argument("--n-val", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=-1)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--precision", default="32-true")
    p.add_argument("--devices", default="auto")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default="runs/detector")
    args = p.parse_args(argv)

    torch.set_num_threads(os.cpu_count() or 1)
    L.seed_everything(args.seed)
    dm = YoloDataModule(args.data, args.img_size, args.n_train, args.n_val, args.seed, args.batch_size, args.workers)
    dm.prepare_data()
    dm.setup()
    backbone = MultiScaleBackbone(args.backbone, channels=args.channels)
    module = DetectionModule(
        backbone, num_classes=dm.num_classes, detector=args.detector, image_size=args.img_size,
        fpn_channels=args.fpn_channels, lr=args.lr,
    )
    speed = Throughput()
    trainer = L.Trainer(
        max_epochs=args.epochs,
        max_steps=args.max_steps,
        precision=args.precision,
        devices=args.devices,
        default_root_dir=args.out,
        callbacks=[speed],
        log_every_n_steps=10,
    )
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    minutes = (time.perf_counter() - t0) / 60
    m = trainer.callback_metrics
    ckpt = Path(trainer.default_root_dir) / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    params = sum(p.numel() for p in module.parameters()) / 1e6
    print(
        f"\n{args.backbone} + {args.detector}: {params:.2f} M params, {trainer.global_step} steps in {minutes:.1f} min"
        f" at {args.img_size}², batch {args.batch_size}\n"
        f"  val mAP50 {float(m.get('val/map_50', float('nan'))):.4f}  mAP50-95 {float(m.get('val/map', float('nan'))):.4f}"
        f"  train {speed.images_per_second:.2f} img/s  peak RSS {rss:.2f} GB"
        + (f"  peak CUDA {torch.cuda.max_memory_allocated() / 2**30:.2f} GB" if torch.cuda.is_available() else "")
        + f"\n  checkpoint {ckpt}"
    )


if __name__ == "__main__":
    main()
