"""The end of a ``longseq-train-dna`` run: evaluation of the best checkpoint beside the
majority-class baseline, and the summary (printed, and written as ``summary.json``)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["coverage_text", "evaluate_checkpoint", "format_evaluation", "print_summary"]


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


def print_summary(s: dict[str, Any], stages: list | None) -> None:
    """The end-of-run summary on stdout."""
    print("\n== train_dna summary ==")
    print(f"task {s['task']}: {_steps_text(s)}")
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
    scored = coverage_text(s, "val")
    if scored and "val" not in s:  # the evaluation block of classification/annotation says it itself
        print(f"validation: {scored}")
    if "best_val_bpb" in s:
        line = f"best validation bits per base: {s['best_val_bpb']:.4f}"
        if "markov_val_bpb" in s:
            line += f"   (order-{s['markov_order']} Markov baseline: {s['markov_val_bpb']:.4f})"
        print(line)
        if "markov_margin_bpb" in s:
            verdict = "better than" if s["markov_margin_bpb"] < 0 else "not better than"
            print(f"margin: {s['markov_margin_bpb']:+.4f} bits/base vs Markov-{s['markov_order']} "
                  f"({verdict} the baseline)")
    from genomics.tasks.classification import BEST_BY

    for key in BEST_BY:
        if f"best_val_{key}" in s:
            print(f"best validation {key}: {s[f'best_val_{key}']:.4f}")
    if "needle_test_acc" in s:
        print(f"needle accuracy at {s['needle_eval_seq_len']:,} bases: {s['needle_test_acc']:.3f} (chance 0.5)")
    if "val" in s and "majority_baseline" in s["val"]:
        print(format_evaluation(s))
    print(f"checkpoint: {s['checkpoint']}")
    if s.get("last_checkpoint"):
        print(f"last checkpoint ({_cadence_text(s)}resume with --ckpt-path last): {s['last_checkpoint']}")
    if s.get("resumed_from"):
        print(f"resumed from: {s['resumed_from']}")
    if s.get("initialised_from"):
        print(f"weights initialised from: {s['initialised_from']}")
    print(f"config: {s['config']}\nmetrics: {s['metrics_csv']}")
    if "summary_json" in s:
        print(f"summary: {s['summary_json']}")


def _cadence_text(s: dict[str, Any]) -> str:
    """``saved every 50 steps and every 10 minutes; `` (or by time only when the run has no
    step budget to take 5% of)."""
    steps, minutes = s.get("checkpoint_every_steps"), s.get("checkpoint_every_minutes")
    parts = ([f"{steps:,} steps"] if steps else []) + ([f"{minutes:.3g} minutes"] if minutes else [])
    return f"saved every {' and every '.join(parts)} and at the end; " if parts else ""


def _steps_text(s: dict[str, Any]) -> str:
    """``80 steps, ... bases in 94 s``; for a resumed run the steps of the whole run and of
    this process apart, since the bases and seconds are this process's only."""
    this = s.get("steps_this_process", s["steps"])
    work = f"{s['train_tokens']:,} training bases in {s['wall_s']:.0f} s"
    if s.get("resumed_from") and this != s["steps"]:
        return f"{s['steps']:,} steps in all, {this:,} in this process (resumed): {work}"
    return f"{s['steps']:,} steps, {work}"


def coverage_text(s: dict[str, Any], split: str) -> str:
    """``28,672 of its 30,000 bases scored (95.6%: whole 4,096-base windows only, ...)`` when
    the windows of ``split`` leave bases of its regions unscored (a remainder shorter than a
    window at a region's end, windows with too many N), else ""."""
    scored, bases = s.get(f"{split}_bases_scored"), s.get(f"{split}_bases")
    if scored is None or not bases or scored >= bases:
        return ""
    window = f"whole {s['val_window']:,}-base windows" if s.get("val_window") else "whole windows"
    return (f"{scored:,} of its {bases:,} bases scored ({scored / bases:.1%}: {window} only, each inside one "
            f"region and with at most data.max_n_frac N)")


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
    validation = s["data"].get("validation", "")
    if coverage_text(s, "val"):
        validation += f"; {coverage_text(s, 'val')}"
    lines = [f"evaluation of {s['evaluated_checkpoint']}",
             f"classes: {', '.join(classes)}; validation: {validation}",
             *([f"readout: {s['data']['pool']}"] if s["data"].get("pool") else []),
             " " * width + "".join(f"{names[sp]:>14}" for sp in splits)]
    lines += [label.ljust(width) + "".join(f"{_fmt(v):>14}" for v in values) for label, values in rows]
    return "\n".join(lines)
