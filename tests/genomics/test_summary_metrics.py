"""The run summary of classification and annotation: validation and test metrics of the best
checkpoint beside the majority-class baseline, printed and written as summary.json."""

from __future__ import annotations

import json
import math

import pytest
import torch

from genomics.cli import train_dna
from genomics.tasks.metrics import eval_metrics, majority_baseline, metric_results

from .dna_data import random_dna, write_fasta
from .labelled_data import QUICK, table_rows, write_split_folder, write_table

SCALARS = ("acc", "mcc", "auroc", "f1_macro")


def _check_split(result: dict, classes: list[str]) -> None:
    assert set(result) >= {*SCALARS, "f1", "recall", "class_counts", "n", "majority_baseline"}
    assert 0.0 <= result["acc"] <= 1.0 and -1.0 <= result["mcc"] <= 1.0 and 0.0 <= result["auroc"] <= 1.0
    assert 0.0 <= result["f1_macro"] <= 1.0
    assert list(result["class_counts"]) == classes and sum(result["class_counts"].values()) == result["n"]
    for per_class in (result["recall"], result["f1"]):
        assert list(per_class) == classes and all(v is None or 0.0 <= v <= 1.0 for v in per_class.values())
    base = result["majority_baseline"]
    assert base["class"] in classes and base["mcc"] == 0.0 and base["auroc"] == 0.5
    assert base["acc"] == pytest.approx(result["class_counts"][base["class"]] / result["n"])


def test_summary_json_has_val_and_test_metrics_beside_the_baseline(tmp_path, capsys):
    folder = write_split_folder(tmp_path / "promoters", {"train": 30, "dev": 9, "test": 11})
    s = train_dna.run(["--task", "classification", "--data", str(folder), "--max-steps", "6", "--batch-size", "8",
                       "--seq-len", "32", "--out-dir", str(tmp_path / "runs")])
    classes = ["neg", "pos"]
    assert s["classes"] == classes and s["unit"] == "sequences"
    for split, n in (("val", 9), ("test", 11)):
        _check_split(s[split], classes)
        assert s[split]["n"] == n
    assert s["val"]["majority_baseline"]["class"] == "neg"  # 15/15 in training: the first class on a tie
    saved = json.loads(open(s["summary_json"]).read())
    assert saved["val"] == s["val"] and saved["test"] == s["test"] and saved["classes"] == classes
    assert saved["summary_json"].endswith("summary.json") and saved["evaluated_checkpoint"] == s["checkpoint"]
    out = capsys.readouterr().out
    block = out[out.index("evaluation of"):]
    assert "validation" in block and "test" in block
    for label in ("accuracy", "MCC", "AUROC", "majority 'neg'", "majority baseline", "recall neg", "recall pos"):
        assert label in block, label
    # the numbers are those of the evaluated (best) checkpoint, as a fresh evaluation finds them
    import lightning as L

    from genomics.data import SequenceClassificationDataModule
    from genomics.tasks import ClassificationTask

    model = ClassificationTask.load_from_checkpoint(s["evaluated_checkpoint"], map_location="cpu")
    dm = SequenceClassificationDataModule(str(folder), max_len=32, batch_size=8)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.validate(model, datamodule=dm, verbose=False)
    trainer.test(model, datamodule=dm, verbose=False)
    assert model.eval_results["val"]["acc"] == pytest.approx(s["val"]["acc"])
    assert model.eval_results["test"]["mcc"] == pytest.approx(s["test"]["mcc"])


def test_multiclass_summary_shows_macro_f1_and_recall_per_class(tmp_path, capsys):
    labels = ["a", "b", "c"] * 12
    path = write_table(tmp_path / "three.csv", ["sequence", "label"], table_rows(labels))
    s = train_dna.run(["--task", "classification", "--data", str(path), *QUICK, "--out-dir", str(tmp_path / "r")])
    _check_split(s["val"], ["a", "b", "c"])
    assert s["train_class_counts"] == {"a": 10, "b": 11, "c": 11} and s["val"]["n"] == 4  # 10% of 36, stratified
    assert s["val"]["majority_baseline"]["class"] == "b"  # the most frequent training class, first on a tie
    block = capsys.readouterr().out.split("evaluation of")[1]
    for label in ("macro-F1", "recall a", "recall b", "recall c", "majority 'b'"):
        assert label in block, label


def test_annotation_predicting_the_majority_everywhere_scores_mcc_zero(tmp_path, monkeypatch, capsys):
    """Per-base annotation whose model says 'intergenic' everywhere: its accuracy equals the
    baseline's and its MCC is 0.0, printed beside the baseline."""
    from genomics.models.classifier import DNAClassifier

    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    forward = DNAClassifier.forward

    def majority_everywhere(self, *args, **kwargs):
        logits = forward(self, *args, **kwargs)
        return logits + torch.tensor([100.0, 0.0, 0.0], device=logits.device)  # class 0: intergenic

    monkeypatch.setattr(DNAClassifier, "forward", majority_everywhere)
    fasta = write_fasta(tmp_path / "g.fna", {"chr1": random_dna(8000, 11)})
    gff = tmp_path / "g.gff"
    gff.write_text("".join(f"chr1\tx\t{t}\t{a}\t{b}\t.\t+\t.\tID={i}\n"
                           for i, (t, a, b) in enumerate((("gene", 101, 900), ("CDS", 2001, 2600),
                                                          ("CDS", 7301, 7600), ("gene", 7701, 7900)))))
    s = train_dna.run(["--task", "annotation", "--fasta", str(fasta), "--gff", str(gff), "--seq-len", "256",
                       "--max-steps", "2", "--out-dir", str(tmp_path / "runs")])
    val = s["val"]
    _check_split(val, ["intergenic", "gene", "CDS"])
    assert val["majority_baseline"]["class"] == "intergenic"
    assert val["mcc"] == 0.0 and val["acc"] == pytest.approx(val["majority_baseline"]["acc"])
    assert 0.0 < val["acc"] < 1.0 and val["class_counts"]["CDS"] > 0  # both classes are in the validation bases
    assert val["recall"] == {"intergenic": 1.0, "gene": 0.0, "CDS": 0.0}
    block = capsys.readouterr().out.split("evaluation of")[1]
    lines = {line.rsplit(None, 1)[0].strip(): line.split()[-1] for line in block.splitlines()[3:]}
    assert lines["MCC"] == "0.0000" and lines["majority baseline"] == "0.0000"
    assert "F1 intergenic" in lines and "F1 CDS" in lines and "macro-F1" in lines
    assert json.loads(open(s["summary_json"]).read())["val"]["mcc"] == 0.0


def test_metric_results_and_baseline():
    metrics = eval_metrics(3)
    probs = torch.tensor([[0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    metrics.update(probs, torch.tensor([0, 0, 1, 1]))
    r = metric_results(metrics.compute(), ["x", "y", "z"])
    assert r["n"] == 4 and r["class_counts"] == {"x": 2, "y": 2, "z": 0}
    assert r["acc"] == pytest.approx(0.75) and r["recall"] == {"x": 1.0, "y": 0.5, "z": None}
    assert r["f1"]["z"] is None and r["f1"]["x"] == pytest.approx(0.8)
    assert r["f1_macro"] == pytest.approx((0.8 + 2 / 3) / 2)  # z: neither a target nor predicted
    assert majority_baseline({"x": 3, "y": 1}, "x") == {"class": "x", "acc": 0.75, "mcc": 0.0, "auroc": 0.5}
    assert math.isnan(majority_baseline({"x": 0}, "x")["acc"])


def test_best_checkpoint_is_validated_again_unless_the_last_validation_scored_it():
    from types import SimpleNamespace

    calls = []
    result = {"n": 4, "class_counts": {"a": 3, "b": 1}, "acc": 0.5}
    module = SimpleNamespace(eval_results={"val": dict(result)})
    trainer = SimpleNamespace(validate=lambda *a, **k: calls.append(("validate", k["ckpt_path"])),
                              test=lambda *a, **k: calls.append(("test", k["ckpt_path"])))
    dm = SimpleNamespace(datasets={"train": 0, "val": 0, "test": 0}, class_names=["a", "b"],
                         class_counts={"train": {"a": 5, "b": 2}}, majority_class=lambda: "a",
                         description={"validation": "validation split from --data"})
    module.eval_results["test"] = dict(result)
    best = SimpleNamespace(best_model_path="best.ckpt", best_model_score=torch.tensor(0.5))
    out = train_dna.evaluate_checkpoint("classification", trainer, module, dm, "best.ckpt", best, torch.tensor(0.5))
    assert calls == [("test", "best.ckpt")]  # the last validation was the best one: reused
    assert out["val"]["majority_baseline"] == {"class": "a", "acc": 0.75, "mcc": 0.0, "auroc": 0.5}
    calls.clear()
    train_dna.evaluate_checkpoint("classification", trainer, module, dm, "best.ckpt", best, torch.tensor(0.7))
    assert calls == [("validate", "best.ckpt"), ("test", "best.ckpt")]
