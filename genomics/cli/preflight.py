"""Checks ``longseq-train-dna`` runs before any data work, model or Trainer exists.

Each check raises :class:`~longseq.training.errors.UserError` (or a
:class:`~genomics.io.readers.GenomeFormatError`) whose message starts with the flag or file at
fault; ``longseq-train-dna`` prints it as one line and exits with status 2, nothing written.

* :func:`check_flags`: numeric flags in range (0 and negatives are errors, never "use the
  config's value"), ``--max-time`` in ``DD:HH:MM:SS``.
* :func:`check_config_values`: the same ranges for the merged config's keys, named by flag
  when a flag set them, else by file and key.
* :func:`check_genome_files`: each genome file exists, is not empty, and its first record
  parses as DNA (a protein FASTA is named as such).
* :func:`check_out_dir`: ``--out-dir`` is a folder, or can be made one.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any, Sequence

from longseq.training.errors import UserError

__all__ = ["check_config_values", "check_flags", "check_genome_files", "check_out_dir"]

#: ``(flag, attribute, minimum)``: flags whose value must be at least ``minimum``.
_FLAG_MINIMUMS: tuple[tuple[str, str, float], ...] = (
    ("--seq-len", "seq_len", 1), ("--batch-size", "batch_size", 1), ("--max-steps", "max_steps", 1),
    ("--num-workers", "num_workers", 0), ("--ckpt-every-steps", "ckpt_every_steps", 1), ("--seed", "seed", 0),
)
#: ``(section, key, minimum, flag that sets it, whole number)``; keys absent or None are not checked.
_CONFIG_MINIMUMS: tuple[tuple[str, str, float, str | None, bool], ...] = (
    ("schedule", "seq_len", 2, "--seq-len", True), ("schedule", "batch_size", 1, "--batch-size", True),
    ("schedule", "max_steps", 1, "--max-steps", True), ("schedule", "train_tokens", 1, None, True),
    ("schedule", "start_len", 2, None, True), ("schedule", "factor", 2, None, True),
    ("schedule", "val_every", 1, None, True), ("schedule", "warmup_tokens_per_step", 1, None, True),
    ("schedule", "warmup_tokens", 1, None, True), ("model", "chunk_above", 0, None, True),
    ("model", "kmer_kernel", 1, None, True), ("model", "conv_layers", 0, None, True),
    ("model", "conv_kernel", 1, None, True),
    ("data", "batch_size", 1, "--batch-size", True), ("data", "val_batch_size", 1, None, True),
    ("data", "max_len", 1, "--seq-len", True), ("data", "num_workers", 0, "--num-workers", True),
    ("data", "samples_per_epoch", 1, None, True), ("data", "train_samples", 1, None, True),
    ("data", "eval_seq_len", 2, None, True),
    ("task", "max_steps", 1, "--max-steps", True), ("task", "warmup_steps", 0, None, True),
    ("task", "lr", 0, None, False), ("task", "weight_decay", 0, None, False),
    ("checkpoint", "every_steps", 1, "--ckpt-every-steps", True),
    ("trainer", "log_every_n_steps", 1, None, True),
)
_MAX_TIME = re.compile(r"^\d+:\d{1,2}:\d{1,2}:\d{1,2}$")
_SNIFF = 10_000  # bases of the first record checked up front


def check_flags(args: argparse.Namespace) -> None:
    """Numeric flags in range and ``--max-time`` in ``DD:HH:MM:SS``; raises :class:`UserError`."""
    for flag, attr, minimum in _FLAG_MINIMUMS:
        value = getattr(args, attr, None)
        if value is not None and value < minimum:
            raise UserError(f"{flag}: must be {'>= 0' if minimum == 0 else 'a positive whole number'}, got {value}")
    minutes = getattr(args, "ckpt_every_minutes", None)
    if minutes is not None and not minutes > 0:
        raise UserError(f"--ckpt-every-minutes: must be > 0, got {minutes:g}")
    if args.seed is not None and args.seed >= 2**32:
        raise UserError(f"--seed: must be below 2**32, got {args.seed}")
    if args.max_time is not None and not _MAX_TIME.match(args.max_time):
        raise UserError(f"--max-time: expected DD:HH:MM:SS (e.g. 00:01:30:00), got {args.max_time!r}")


def _is_number(value: Any, whole: bool) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if whole else isinstance(value, (int, float))


def check_config_values(cfg: dict[str, dict[str, Any]], args: argparse.Namespace, source: str | Path) -> None:
    """The merged config's numeric keys in range and of the right type. A key a flag set is
    named by the flag (``--seq-len: ...``), any other by ``<config>: section.key``."""
    given = {flag for flag, attr, _ in _FLAG_MINIMUMS if getattr(args, attr, None) is not None}
    for section, key, minimum, flag, whole in _CONFIG_MINIMUMS:
        value = cfg.get(section, {}).get(key)
        if value is None:
            continue
        name = flag if flag in given else f"{source}: {section}.{key}"
        kind = "a whole number" if whole else "a number"
        if not _is_number(value, whole):
            raise UserError(f"{name}: must be {kind}, got {value!r}")
        if value < minimum:
            raise UserError(f"{name}: must be >= {minimum:g}, got {value}")
    minutes = cfg.get("checkpoint", {}).get("every_minutes")
    if minutes is not None and (not _is_number(minutes, False) or not minutes > 0):
        name = "--ckpt-every-minutes" if args.ckpt_every_minutes is not None else f"{source}: checkpoint.every_minutes"
        raise UserError(f"{name}: must be a number > 0, got {minutes!r}")
    from longseq.training.averaging import Averaging

    try:
        Averaging(**cfg.get("averaging", {}))
    except ValueError as exc:
        raise UserError(f"{source}: averaging.{exc}") from None


def check_genome_files(paths: Sequence[str], flag: str) -> None:
    """Each genome file exists, is not empty, and its first record parses as DNA.

    Only the first record is read (the whole file is read once, into the cache, when the data
    module is set up; an error further into the file is raised there, also before the model).
    A path is a file or ``archive.zip::member`` (a wrong member name lists the archive's
    sequence files).
    """
    from genomics.data.tokenizers import NucleotideTokenizer
    from genomics.io.readers import (
        GenomeFormatError, describe_bad_sequence, detect_format, iter_records, missing_input,
    )

    tokenizer = NucleotideTokenizer("keep")
    for path in paths:
        problem = missing_input(path)
        if problem is not None:
            raise UserError(f"{flag} {path}: {problem}")
        if "::" not in str(path) and Path(path).stat().st_size == 0:
            raise UserError(f"{flag} {path}: empty file")
        try:
            detect_format(path)
            records = iter_records(path)
            first = next(records)
            records.close()
        except GenomeFormatError as exc:  # most messages start with the quoted path
            message = str(exc)
            raise GenomeFormatError(f"{flag} {message}" if message.startswith(repr(str(path)))
                                    else f"{flag} {path}: {message}") from None
        except OSError as exc:
            raise UserError(f"{flag} {path}: cannot read: {exc}") from None
        text = str(first.seq[:_SNIFF])
        try:
            tokenizer.encode(text, record=first.id)
        except ValueError as exc:
            raise GenomeFormatError(f"{flag} {path}: {describe_bad_sequence(text, first.id, str(exc))}") from None


def check_out_dir(out_dir: Path) -> None:
    """``--out-dir`` is a folder, or a folder can be made there (nothing is created here)."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise UserError(f"--out-dir {out_dir}: exists and is not a folder")
        if not os.access(out_dir, os.W_OK | os.X_OK):
            raise UserError(f"--out-dir {out_dir}: not writable")
        return
    parent = out_dir.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"--out-dir {out_dir}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"--out-dir {out_dir}: cannot create it ({parent} is not writable)")
