"""Evaluation metrics of the classification and annotation tasks (torchmetrics), and the
majority-class baseline they are read against.

:func:`eval_metrics` collects, over a whole validation or test pass: accuracy, MCC, AUROC
(one-vs-rest macro; for two classes the binary AUROC), macro-F1, and per-class F1 and
recall. :func:`majority_baseline` gives what always predicting the training majority class
scores on the same rows: its accuracy, MCC 0 and AUROC 0.5 by construction.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy, MulticlassAUROC, MulticlassF1Score, MulticlassMatthewsCorrCoef, MulticlassRecall,
    MulticlassStatScores,
)

__all__ = ["PER_CLASS", "eval_metrics", "majority_baseline", "metric_results", "safe_name"]

#: The metrics with one value per class.
PER_CLASS = ("f1", "recall")


def eval_metrics(num_classes: int, *, auroc_thresholds: int | None = None) -> MetricCollection:
    """The metrics of one split. Update with ``(probabilities (N, C), targets (N,))``.
    ``auroc_thresholds``: binned AUROC (bounded memory over millions of bases), or exact."""
    return MetricCollection({
        "acc": MulticlassAccuracy(num_classes, average="micro"),
        "mcc": MulticlassMatthewsCorrCoef(num_classes),
        "auroc": MulticlassAUROC(num_classes, thresholds=auroc_thresholds),
        "f1_macro": MulticlassF1Score(num_classes, average="macro"),
        "f1": MulticlassF1Score(num_classes, average=None),
        "recall": MulticlassRecall(num_classes, average=None),
        "stats": MulticlassStatScores(num_classes, average=None),  # tp, fp, tn, fn, support per class
    })


def safe_name(name: str) -> str:
    """A class name usable in a metric key (``val/recall/<name>``)."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(name)) or "_"


def metric_results(values: Mapping[str, Tensor], class_names: Sequence[str]) -> dict[str, object]:
    """``compute()`` output -> plain values: floats; ``{class: float}`` for :data:`PER_CLASS`
    (None where undefined: recall of a class absent from the targets, F1 of a class absent
    from targets and predictions); ``class_counts`` ``{class: int}`` (the targets) and ``n``."""
    names = [str(n) for n in class_names]
    stats = values["stats"].long().tolist()  # per class: tp, fp, tn, fn, support
    support = {n: row[4] for n, row in zip(names, stats)}
    predicted = {n: row[0] + row[1] for n, row in zip(names, stats)}
    out: dict[str, object] = {"n": sum(support.values()), "class_counts": support}
    for key, value in values.items():
        if key == "stats":
            continue
        if value.ndim == 0:
            out[key] = round(float(value), 6)
            continue
        per_class = {n: round(float(v), 6) for n, v in zip(names, value.tolist())}
        for n in names:
            if support[n] == 0 and (key == "recall" or predicted[n] == 0):
                per_class[n] = None
        out[key] = per_class
    return out


def majority_baseline(counts: Mapping[str, int], majority: str) -> dict[str, object]:
    """What predicting ``majority`` everywhere scores on rows with class ``counts``."""
    total = sum(counts.values())
    acc = counts.get(majority, 0) / total if total else float("nan")
    return {"class": majority, "acc": acc, "mcc": 0.0, "auroc": 0.5}
