"""Small labelled sequence sets in the layouts users bring: tables, split files, a FASTA per class."""

from __future__ import annotations

from pathlib import Path

from .dna_data import random_dna, write_fasta

#: What every classification run in these tests adds: 2 steps on 32-base sequences.
QUICK = ["--max-steps", "2", "--seq-len", "32"]


def motif_dna(label: str, i: int, n: int = 40) -> str:
    """A random sequence; class ``pos`` (or the first class) carries a fixed motif at the start."""
    seq = random_dna(n, 1000 + i)
    return ("GGGGCCCC" + seq[8:]) if label in ("pos", "promoter", "a") else seq


def table_rows(labels: list[str], start: int = 0) -> list[tuple[str, str]]:
    return [(motif_dna(label, start + i), label) for i, label in enumerate(labels)]


def write_table(path: Path, header: list[str], rows: list[list[str] | tuple[str, ...]], delimiter: str = ",",
                bom: bool = False) -> Path:
    text = "\n".join(delimiter.join(r) for r in [header, *rows]) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def binary_labels(n: int) -> list[str]:
    return ["pos" if i % 2 else "neg" for i in range(n)]


def write_split_folder(folder: Path, sizes: dict[str, int] | None = None, names: dict[str, str] | None = None
                       ) -> Path:
    """``train.csv`` / ``dev.csv`` / ``test.csv`` with a ``sequence,label`` header (GUE layout)."""
    sizes = sizes or {"train": 24, "dev": 8, "test": 10}
    start = 0
    for split, n in sizes.items():
        name = (names or {}).get(split, f"{split}.csv")
        write_table(folder / name, ["sequence", "label"], table_rows(binary_labels(n), start))
        start += n
    return folder


def write_class_fastas(folder: Path, files: dict[str, tuple[str, int]], seed: int = 0) -> Path:
    """``{file name: (class, number of records)}`` -> one FASTA per entry."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, (name, (label, n)) in enumerate(files.items()):
        write_fasta(folder / name, {f"{label}_{seed}_{k}_{i}": motif_dna(label, seed + 100 * k + i) for i in range(n)})
    return folder


def documented_commands(heading: str) -> list[list[str]]:
    """The ``python scripts/train_dna.py`` commands in the code blocks of the docs/genomics.md
    section under ``heading`` (up to the next heading of the same or a higher level), as argv."""
    import re
    import shlex

    text = (Path(__file__).resolve().parents[2] / "docs" / "genomics.md").read_text(encoding="utf-8")
    level = len(heading) - len(heading.lstrip("#"))
    start = text.index(heading + "\n")
    rest = text[start + len(heading) + 1:]
    stop = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    section = rest[: stop.start()] if stop else rest
    blocks = re.findall(r"^```bash\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    lines = [line.split("#", 1)[0].strip() for block in blocks for line in block.splitlines()]
    return [shlex.split(line)[2:] for line in lines if line.startswith("python scripts/train_dna.py")]
