"""Small synthetic genomes for the genomics tests."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def random_dna(n: int, seed: int = 0, alphabet: str = "ACGT") -> str:
    rng = np.random.default_rng(seed)
    return "".join(rng.choice(list(alphabet), size=n))


def write_fasta(path: Path, records: dict[str, str], gz: bool = False, width: int = 60) -> Path:
    text = "".join(
        f">{name} test record\n" + "\n".join(seq[i : i + width] for i in range(0, len(seq), width)) + "\n"
        for name, seq in records.items()
    )
    if gz:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path
