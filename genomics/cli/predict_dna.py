"""Predict with a trained DNA model, or embed sequences (console command: ``longseq-predict-dna``).

    python scripts/predict_dna.py --ckpt runs/dna/classification/version_0/checkpoints/last.ckpt --data seqs.csv --out preds.csv
    python scripts/predict_dna.py --ckpt runs/dna/annotation/version_0/checkpoints/last.ckpt --data seqs.fa --out preds.bed
    python scripts/predict_dna.py --ckpt runs/dna/lm/version_0/checkpoints/last.ckpt --data seqs.fa --out bits.tsv
    python scripts/predict_dna.py --ckpt runs/dna/lm/version_0/checkpoints/last.ckpt --data seqs.fa --embed --out emb.npy

What is written follows the checkpoint's task (no Lightning needed: genomics.load_model):

* classification: CSV ``id,length,p_<class>...,predicted``, one row per sequence.
* annotation: BED4 ``id start end label`` (0-based, end exclusive), one line per run of the
  same label other than the background class 0 (intergenic).
* lm (causal): per-base bits ``-log2 p(base | bases before it)`` of every scored base (the
  first base and N are not scored): TSV ``id position bits`` (CSV for a ``.csv`` name), or
  bedGraph for a ``.bedgraph``/``.bg`` name; per-sequence means go to
  ``<out stem>.per_sequence.csv`` (``id,length,bases_scored,bits_per_base``) and the console.
* ``--embed`` (any checkpoint): encoder features averaged over each sequence's bases, a
  float32 ``.npy`` array (sequences x dim), with ``<out stem>.ids.csv`` (``row,id,length``).

``--data`` is FASTA/FASTQ/GenBank (plain or gzip) or a CSV/TSV table (plain or gzip) with a
``sequence`` (or ``seq``) column; ids come from an ``id`` or ``name`` column, else the row
number (1 = first sequence). Sequences up to ``--window`` bases (default: the longest input
the model trained on; a ``pool: flatten`` classifier's ``model.positions``, which it never
exceeds) go through the model whole, in padded batches; a longer one goes in
windows of ``--window`` bases every ``--stride`` bases, the last ending at the sequence end:
classification probabilities and embeddings are averaged over the windows (default stride:
the window), per-base labels come from the window where the base is farthest from an edge,
and per-base bits from the window giving the most left context (default stride for both:
3/4 of the window).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["main", "parse_args", "run"]

PROG = "longseq-predict-dna"
_OUTPUT_OF_TASK = {"classification": "probabilities", "annotation": "labels", "lm": "bits"}
_SHOWN = 20  # per-sequence lines on the console


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``longseq-predict-dna``."""
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, type=Path, help="checkpoint written by longseq-train-dna")
    p.add_argument("--data", required=True, type=Path,
                   help="sequences: FASTA/FASTQ/GenBank or CSV/TSV with a 'sequence' column (plain or gzip)")
    p.add_argument("--out", required=True, type=Path,
                   help="output file: .csv/.tsv (classification), .bed (annotation), .tsv/.csv/.bedgraph (lm), "
                        ".npy (--embed); a text name ending in .gz is written gzip-compressed")
    p.add_argument("--embed", action="store_true", help="write mean-pooled encoder embeddings instead of predictions")
    p.add_argument("--window", type=int, help="bases per forward pass (default: the longest input trained on; for a "
                                                  "pool: flatten classifier its model.positions, the most it reads)")
    p.add_argument("--stride", type=int, help="bases between window starts for longer sequences "
                                              "(default: the window; 3/4 of it for per-base outputs)")
    p.add_argument("--batch-size", type=int, default=16, help="sequences (or windows) per forward pass")
    p.add_argument("--sequence-column", help="the table's sequence column, when not one of the common names "
                   "(sequence, seq, dna, ...; any case)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="unpickle a checkpoint holding more than tensors and plain values (trusted files only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def _fail(message: str) -> SystemExit:
    return SystemExit(f"{PROG}: error: {message}")


def _output_kind(args: argparse.Namespace, info: Any, model: Any) -> str:
    """What to compute: probabilities, labels, bits or embedding (an error when the checkpoint cannot)."""
    if args.embed:
        if args.out.suffix.lower() != ".npy":
            raise _fail(f"--out {args.out}: --embed writes a NumPy array; give a .npy file name")
        return "embedding"
    if info.task == "needle":
        raise _fail(f"--ckpt {args.ckpt} is a needle checkpoint; measure it with longseq-eval-needle "
                    f"(--embed works with any checkpoint)")
    if info.task == "lm" and getattr(model, "objective", "causal") != "causal":
        raise _fail(f"--ckpt {args.ckpt} holds a masked language model; per-base bits need a causal one "
                    f"(--embed works with any checkpoint)")
    if args.out.suffix.lower() == ".npy":
        raise _fail(f"--out {args.out}: a .npy file is written by --embed; predictions of a {info.task} "
                    f"checkpoint go to a text file")
    output = _OUTPUT_OF_TASK[info.task]
    from genomics.cli.predict_outputs import OUTPUT_SUFFIXES, format_suffix

    if format_suffix(args.out) not in OUTPUT_SUFFIXES[output]:
        names = ", ".join(OUTPUT_SUFFIXES[output])
        raise _fail(f"--out {args.out}: a {info.task} checkpoint writes {output} as {names} "
                    f"(optionally .gz after it); give such a file name")
    return output


def _window_and_stride(args: argparse.Namespace, trained_len: int | None, per_base: bool,
                       positions: int | None = None) -> tuple[int, int]:
    """``positions``: a ``pool="flatten"`` classifier's readout length, the longest window it reads."""
    if positions and args.window and args.window != positions:
        raise _fail(f"--window {args.window}: this classifier reads each position through its own weights "
                    f"(model.pool: flatten), so its windows are the {positions} bases it was trained on "
                    f"(model.positions)")
    if args.window is not None and args.window < 2:
        raise _fail(f"--window must be at least 2 bases, got {args.window}")
    window = args.window or positions or trained_len or 65536
    if window < 2:
        raise _fail(f"--window must be at least 2 bases, got {window}")
    stride = args.stride or (max(1, window * 3 // 4) if per_base else window)
    if not 0 < stride <= window:
        raise _fail(f"--stride must be in [1, --window={window}], got {stride}")
    return window, stride


def _predict(model: Any, seqs: list, output: str, window: int, stride: int, args: argparse.Namespace) -> list:
    """One result per sequence, in input order, with a progress bar over sequences."""
    from tqdm import tqdm

    from genomics.models import predict_sequences

    results: list = [None] * len(seqs)
    arrays = [s.ids for s in seqs]
    with tqdm(total=len(seqs), desc="sequences", unit="seq", disable=args.no_progress or len(seqs) < 2) as bar:
        for i, result in predict_sequences(model, arrays, output, window=window, stride=stride, device=args.device,
                                           batch_size=args.batch_size):
            results[i] = result
            bar.update(1)
    return results


def _report(output: str, out: Path, names: list[str], lengths: list[int], results: list, info: Any) -> dict[str, Any]:
    """Write ``out`` (and its companions), print what was written; the run's summary."""
    import numpy as np

    from genomics.cli import predict_outputs as po

    summary: dict[str, Any] = {"task": info.task, "output": output, "out": str(out), "sequences": len(names)}
    if output == "embedding":
        matrix = np.stack(results)
        summary["ids"] = str(po.write_embeddings(out, names, lengths, matrix))
        summary["shape"] = tuple(matrix.shape)
        print(f"wrote {matrix.shape[0]} x {matrix.shape[1]} mean-pooled embeddings to {out}, ids to {summary['ids']}")
    elif output == "probabilities":
        probs = np.stack(results)
        po.write_probabilities(out, names, lengths, probs, info.class_names)
        counts = np.bincount(probs.argmax(1), minlength=len(info.class_names))
        print(f"wrote class probabilities of {len(names)} sequences to {out}; predicted: "
              + ", ".join(f"{c} {n}" for c, n in zip(info.class_names, counts.tolist())))
    elif output == "labels":
        summary["intervals"] = po.write_bed(out, names, results, info.class_names)
        print(f"wrote {summary['intervals']} BED intervals ({', '.join(info.class_names[1:])}; "
              f"{info.class_names[0]} left out) over {len(names)} sequences to {out}")
    else:
        fmt = po.write_bits(out, names, results)
        means_path = po.companion(out, "per_sequence")
        means = po.write_sequence_means(means_path, names, results)
        for name, (n, bpb) in list(zip(names, means))[:_SHOWN]:
            print(f"{name}\t{n:,} bases\t{bpb:.4f} bits/base")
        if len(names) > _SHOWN:
            more = len(names) - _SHOWN
            print(f"... {more} more sequence{'' if more == 1 else 's'} in {means_path}")
        scored = sum(n for n, _ in means)
        total = sum(n * b for n, b in means if n)
        summary.update(format=fmt, per_sequence=str(means_path), bases_scored=scored,
                       bits_per_base=total / scored if scored else float("nan"))
        print(f"all {len(names)} sequences: {scored:,} bases, {summary['bits_per_base']:.4f} bits/base "
              f"(weighted by length)")
        print(f"wrote per-base bits ({fmt}) to {out}, per-sequence means to {means_path}")
    return summary


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Predict (or embed) as the command line says; returns a summary (task, output kind, files, counts)."""
    args = parse_args(argv)
    from genomics.cli.predict_inputs import InputError, read_sequences
    from genomics.models import CheckpointError, load_model

    try:
        model, tokenizer, info = load_model(args.ckpt, trusted=args.trust_checkpoint)
    except CheckpointError as exc:
        raise _fail(f"--ckpt {exc}") from None
    output = _output_kind(args, info, model)
    positions = getattr(model, "positions", None) if output == "probabilities" else None
    window, stride = _window_and_stride(args, info.trained_len, output in ("labels", "bits"), positions)
    if args.batch_size < 1:
        raise _fail(f"--batch-size must be at least 1, got {args.batch_size}")
    try:
        seqs = read_sequences(args.data, tokenizer, sequence_column=args.sequence_column)
    except InputError as exc:
        raise _fail(f"--data {exc}") from None
    repeated = [name for name, n in Counter(s.id for s in seqs).items() if n > 1]
    if repeated:
        print(f"warning: {len(repeated)} id(s) name more than one sequence ({', '.join(repeated[:5])}"
              f"{', ...' if len(repeated) > 5 else ''}); the output keeps them in input order", file=sys.stderr)
    model.to(args.device)
    longer = sum(s.ids.size > window for s in seqs)
    print(f"{args.ckpt}: {info.task} model; {len(seqs)} sequences from {args.data}; window {window:,} bases"
          + (f"; {longer} longer than that, in windows every {stride:,} bases" if longer else ""))
    if positions:
        off = sum(s.ids.size != positions for s in seqs)
        if off:
            print(f"warning: {off} of {len(seqs)} sequences are not {positions:,} bases long; this classifier reads "
                  f"each position through its own weights (trained on {positions:,}-base windows), so shorter "
                  f"sequences are read as padded at their end and longer ones in {positions:,}-base windows",
                  file=sys.stderr)
    results = _predict(model, seqs, output, window, stride, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = _report(output, args.out, [s.id for s in seqs], [int(s.ids.size) for s in seqs], results, info)
    summary.update(window=window, stride=stride, windowed=longer)
    return summary


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``longseq-predict-dna``)."""
    run(argv)


if __name__ == "__main__":
    main()
