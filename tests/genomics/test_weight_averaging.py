"""A classification run with an EMA of its weights (``averaging.ema_decay``): the checkpoint holds
the averaged weights beside the raw ones, and the metrics the summary reports are those of the
weights that ``predict_dna`` loads from it."""

from __future__ import annotations

import csv

import pytest
import torch
from torchmetrics.functional.classification import binary_auroc

from genomics.cli import predict_dna, train_dna

from .dna_data import random_dna
from .labelled_data import binary_labels, write_table


def test_summary_scores_the_averaged_weights_that_predict_loads(tmp_path):
    # Labels without signal: validation loss is lowest early, so the best checkpoint comes
    # before the last step and validation re-scores it after training.
    data = tmp_path / "bench"
    for split, n, start in (("train", 48, 0), ("dev", 20, 100)):
        rows = [(random_dna(40, start + i), label) for i, label in enumerate(binary_labels(n))]
        write_table(data / f"{split}.csv", ["sequence", "label"], rows)
    summary = train_dna.run(["--task", "classification", "--data", str(data), "--precision", "32",
                             "--set", "averaging.ema_decay=0.9", "--set", "trainer.max_epochs=4",
                             "--set", "task.lr=0.003", "--out-dir", str(tmp_path / "runs")])
    ckpt = torch.load(summary["checkpoint"], weights_only=False)
    assert ckpt["global_step"] < summary["steps"], "this seed should pick an earlier checkpoint"
    averaged, raw = ckpt["state_dict"], ckpt["current_model_state"]
    assert averaged.keys() == raw.keys() and int(ckpt["averaging_state"]["n_averaged"]) == ckpt["global_step"]
    assert any(not torch.equal(averaged[k], raw[k]) for k in averaged if averaged[k].is_floating_point())

    out = tmp_path / "dev_preds.csv"
    predict_dna.run(["--ckpt", summary["checkpoint"], "--data", str(data / "dev.csv"), "--out", str(out),
                     "--no-progress"])
    with open(out) as f:
        p_pos = torch.tensor([float(r["p_pos"]) for r in csv.DictReader(f)])
    labels = torch.tensor([label == "pos" for label in binary_labels(20)]).long()
    assert summary["val"]["auroc"] == pytest.approx(float(binary_auroc(p_pos, labels)), abs=1e-6)
    assert summary["val"]["acc"] == pytest.approx(float(((p_pos > 0.5).long() == labels).float().mean()))
