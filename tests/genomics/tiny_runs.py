"""Tiny 2-step ``longseq-train-dna`` runs of each task, for the prediction and scoring tests.

Runs go to ``<root>/runs/dna/<task>/version_0/`` so the documented checkpoint paths
(``runs/dna/<task>/version_0/checkpoints/last.ckpt``) resolve with ``root`` as the
working directory.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from genomics.cli import train_dna
from genomics.cli.train_config import default_config_path

from .dna_data import random_dna, write_fasta

SMALL_MODEL = {"dim": 32, "depth": 1, "heads": 2, "window": 32, "head_chunks": 1, "ff_chunks": 1}
CLASSES = ("neg", "pos")


def small_config(task: str, path: Path) -> Path:
    """The task's default config with a small model, a short warm-up and no time limit."""
    cfg = yaml.safe_load(default_config_path(task).read_text())
    cfg["model"].update(SMALL_MODEL)
    if task == "classification":
        cfg["model"]["pool"] = "mean"  # windows of any length; pool: flatten has its own tests
    cfg["trainer"].pop("max_time", None)
    cfg["task"]["warmup_steps"] = 1
    if "schedule" in cfg:
        cfg["schedule"].update(start_len=128, warmup_tokens_per_step=512)
    path.write_text(yaml.safe_dump(cfg))
    return path


def write_labelled_csv(path: Path, n: int = 24, length: int = 60) -> Path:
    rows = ["sequence,label"] + [f"{random_dna(length, 100 + i)},{CLASSES[i % 2]}" for i in range(n)]
    path.write_text("\n".join(rows) + "\n")
    return path


def write_annotated_genbank(path: Path) -> Path:
    from Bio import SeqIO
    from Bio.Seq import Seq
    from Bio.SeqFeature import FeatureLocation, SeqFeature
    from Bio.SeqRecord import SeqRecord

    rec = SeqRecord(Seq(random_dna(6000, 2)), id="c1", annotations={"molecule_type": "DNA"})
    rec.features = [SeqFeature(FeatureLocation(s, s + 300, 1), type=t)
                    for s, t in ((500, "gene"), (2000, "CDS"), (5500, "CDS"))]
    SeqIO.write([rec], path, "genbank")
    return path


def train_tiny(task: str, root: Path) -> dict:
    """Train ``task`` for 2 steps under ``root``; returns the run summary (``checkpoint`` ...)."""
    root.mkdir(parents=True, exist_ok=True)
    config = small_config(task, root / f"{task}.yaml")
    common = ["--task", task, "--max-steps", "2", "--config", str(config), "--out-dir", str(root / "runs" / "dna")]
    if task == "lm":
        fasta = write_fasta(root / "train.fa", {"chr": random_dna(12000, 1)})
        return train_dna.run([*common, "--fasta", str(fasta), "--seq-len", "512", "--no-markov"])
    if task == "classification":
        data = write_labelled_csv(root / "labelled.csv")
        return train_dna.run([*common, "--data", str(data), "--seq-len", "50"])
    if task == "annotation":
        gb = write_annotated_genbank(root / "annotated.gb")
        return train_dna.run([*common, "--fasta", str(gb), "--seq-len", "256"])
    raise ValueError(task)
