"""End-to-end: scripts/train_dna.py for 2-3 steps on small windows, and every genomics YAML."""

import csv
import math
import platform
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from longseq.hardware import cpu_description

from ..scripts import load_script
from .dna_data import random_dna, write_fasta

REPO = Path(__file__).resolve().parents[2]


def _load_script(name: str):
    return load_script(name, module_name=name)


@pytest.fixture(scope="module")
def train_dna():
    return _load_script("train_dna")


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "genomics").glob("*.yaml")), ids=lambda p: p.name)
def test_configs_match_signatures(train_dna, path):
    cfg = train_dna.load_config(path)
    task = next((t for t in ("annotation", "classification", "needle") if t in path.stem), "lm")
    train_dna.validate_config(cfg, task)


def test_bad_config_key_is_named(train_dna, tmp_path):
    (tmp_path / "bad.yaml").write_text("model:\n  dimm: 64\n")
    with pytest.raises(ValueError, match=r"model: unknown key\(s\) \['dimm'\]"):
        train_dna.validate_config(train_dna.load_config(tmp_path / "bad.yaml"), "lm")


def _small_config(tmp_path: Path) -> Path:
    cfg = yaml.safe_load((REPO / "configs" / "genomics" / "tiny.yaml").read_text())
    cfg["schedule"].update(start_len=128, warmup_tokens_per_step=512)
    cfg["trainer"].pop("max_time", None)
    cfg["task"]["warmup_steps"] = 1
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_two_step_lm_training_and_reload(train_dna, tmp_path, monkeypatch):
    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    fasta = write_fasta(tmp_path / "g.fa", {"chr": random_dna(12000, 1)})
    summary = train_dna.main([
        "--fasta", str(fasta), "--seq-len", "512", "--max-steps", "2", "--config", str(_small_config(tmp_path)),
        "--out-dir", str(tmp_path / "runs"),
    ])
    assert summary["steps"] == 2 and summary["max_seq_len_trained"] == 512  # warm-up 128 -> 512
    assert summary["train_tokens"] == 128 * 4 + 512 and summary["tokens_per_s"] > 0
    assert 1.5 < summary["best_val_bpb"] < 3.0  # random DNA: about 2 bits per base
    assert summary["markov_order"] >= 0 and 1.9 < summary["markov_val_bpb"] < 2.2
    rows = list(csv.DictReader(open(summary["metrics_csv"])))
    assert any(r.get("val/bpb") for r in rows)
    from genomics.tasks import LanguageModelTask

    model = LanguageModelTask.load_from_checkpoint(summary["checkpoint"], map_location="cpu")
    assert model.backbone.backbone.dim == 128
    with torch.no_grad():
        assert model(torch.randint(0, 4, (1, 300))).shape == (1, 300, 9)
    score_dna = _load_script("score_dna")
    result = score_dna.main(["--ckpt", summary["checkpoint"], "--fasta", str(fasta), "--window", "4096",
                             "--out", str(tmp_path / "scores")])
    ll = np.load(tmp_path / "scores" / "chr.npy")
    assert ll.shape == (12000,) and np.isnan(ll[0]) and np.isfinite(ll[1:]).all()
    assert abs(result["chr"] + ll[1:].mean()) < 1e-4 and 1.5 < result["chr"] < 3.0


def test_two_step_classification(train_dna, tmp_path, monkeypatch, caplog):
    rows = ["sequence,label"] + [f"{random_dna(60, i)},{i % 2}" for i in range(24)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "cls.yaml").write_text("model:\n  dim: 32\n  depth: 1\n  heads: 2\n  window: 8\n  global_tokens: 1\n  pool: cls\n"
                                       "data:\n  batch_size: 8\n")
    # The flag with the opt-out set: the run says it had no effect (and this test process's
    # malloc stays as it was for the tests after it).
    monkeypatch.setenv("LONGSEQ_REUSE_FREED_MEMORY", "0")
    summary = train_dna.main(["--task", "classification", "--data", str(tmp_path / "d.csv"), "--max-steps", "2",
                              "--config", str(tmp_path / "cls.yaml"), "--out-dir", str(tmp_path / "runs"),
                              "--reuse-freed-memory"])
    assert summary["steps"] == 2 and math.isfinite(summary["best_val_loss"])
    assert summary["reuse_freed_memory"] is False and "--reuse-freed-memory had no effect" in caplog.text
    rows = list(csv.DictReader(open(summary["metrics_csv"])))
    assert any(r.get("val/mcc") for r in rows) and any(r.get("val/auroc") for r in rows)


def test_two_step_annotation(train_dna, tmp_path, monkeypatch):
    from Bio import SeqIO
    from Bio.Seq import Seq
    from Bio.SeqFeature import FeatureLocation, SeqFeature
    from Bio.SeqRecord import SeqRecord

    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    rec = SeqRecord(Seq(random_dna(6000, 2)), id="c1", annotations={"molecule_type": "DNA"})
    rec.features = [SeqFeature(FeatureLocation(s, s + 300, 1), type=t) for s, t in ((500, "gene"), (2000, "CDS"), (5500, "CDS"))]
    SeqIO.write([rec], tmp_path / "a.gb", "genbank")
    (tmp_path / "ann.yaml").write_text("model:\n  dim: 32\n  depth: 1\n  heads: 2\n  window: 16\n"
                                       "schedule:\n  start_len: 4096\n")
    summary = train_dna.main(["--task", "annotation", "--fasta", str(tmp_path / "a.gb"), "--seq-len", "256",
                              "--max-steps", "2", "--config", str(tmp_path / "ann.yaml"),
                              "--out-dir", str(tmp_path / "runs")])
    assert summary["steps"] == 2 and summary["max_seq_len_trained"] == 256


def test_two_step_needle(train_dna, tmp_path, monkeypatch):
    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    fasta = write_fasta(tmp_path / "g.fa", {"chr": random_dna(30000, 3)})
    cfg = yaml.safe_load((REPO / "configs" / "genomics" / "needle_global.yaml").read_text())
    cfg["model"].update(dim=32, heads=2, window=16)
    cfg["data"].update(eval_seq_len=4096, min_distance=1500, train_samples=4, val_samples=2, test_samples=3)
    (tmp_path / "n.yaml").write_text(yaml.safe_dump(cfg))
    summary = train_dna.main(["--task", "needle", "--fasta", str(fasta), "--seq-len", "512", "--max-steps", "2",
                              "--config", str(tmp_path / "n.yaml"), "--out-dir", str(tmp_path / "runs")])
    assert summary["steps"] == 2 and summary["needle_eval_seq_len"] == 4096
    assert 0.0 <= summary["needle_test_acc"] <= 1.0
    # eval_needle.py draws the same fixed test windows as the training run's test step
    eval_needle = _load_script("eval_needle")
    rows = eval_needle.main(["--ckpt", summary["checkpoint"], "--fasta", str(fasta), "--lengths", "4096",
                             "--min-distance", "1500", "--samples", "3", "--out", str(tmp_path / "eval")])
    assert [(r["seq_len"], r["min_distance"], r["samples"]) for r in rows] == [(4096, 1500, 3)]
    assert eval_needle.min_distance_for(1_048_576, None) == 500_000  # the figure at 1M
    assert eval_needle.min_distance_for(65536, None) == 31250 and eval_needle.min_distance_for(65536, 7) == 7
    assert rows[0]["accuracy"] == pytest.approx(summary["needle_test_acc"])
    assert (tmp_path / "eval" / "needle_eval.png").stat().st_size > 0
    with open(tmp_path / "eval" / "needle_eval.csv") as f:
        assert [int(r["correct"]) for r in csv.DictReader(f)] == [r["correct"] for r in rows]
    # --init-from: the next run starts from these weights with a fresh schedule (lr 0, so the
    # weights it saves must be the ones it loaded)
    cfg["task"]["lr"] = 0.0
    (tmp_path / "n0.yaml").write_text(yaml.safe_dump(cfg))
    common = ["--task", "needle", "--fasta", str(fasta), "--seq-len", "512", "--config", str(tmp_path / "n0.yaml")]
    again = train_dna.main([*common, "--max-steps", "1", "--no-warmup", "--init-from", summary["checkpoint"],
                            "--out-dir", str(tmp_path / "runs2")])
    assert again["steps"] == 1 and again["max_seq_len_trained"] == 512
    before, after = (torch.load(c, weights_only=False)["state_dict"] for c in (summary["checkpoint"], again["checkpoint"]))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(SystemExit, match="exclude each other"):
        train_dna.main([*common, "--init-from", summary["checkpoint"], "--ckpt-path", summary["checkpoint"]])


def test_bench_dna_tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))  # inherited by the child processes
    for name in ("LONGSEQ_REUSE_FREED_MEMORY", "GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "m.yaml").write_text("model:\n  dim: 32\n  depth: 1\n  heads: 2\n  window: 16\n")
    bench = _load_script("bench_dna")
    rows = bench.main(["--config", str(tmp_path / "m.yaml"), "--seq-lens", "256", "--steps", "1",
                       "--reuse-freed-memory", "--out", str(tmp_path / "bench")])
    assert [(r["seq_len"], r["precision"], r["status"]) for r in rows] == [(256, "fp32", "ok"), (256, "bf16-mixed", "ok")]
    assert all(r["tokens_per_s"] > 0 and 0 < r["peak_rss_gb"] < 8 and r["params"] > 1000 for r in rows)
    assert all(r["matmul_gflops"] > 1 for r in rows)  # the reference is measured in the same run
    assert all(0.0 <= r["sys_share"] <= 1.0 for r in rows)
    glibc = platform.libc_ver()[0] == "glibc"
    assert all(r["reuse_freed_memory"] is glibc for r in rows)  # the flag reached the timed processes
    table = list(csv.DictReader(open(tmp_path / "bench" / "bench_dna.csv")))
    assert len(table) == 2 and (tmp_path / "bench" / "bench_dna.png").stat().st_size > 5000
    assert all(r["cpu"] == cpu_description() for r in table)  # figures name the machine they came from
    assert not bench.parse_args([]).reuse_freed_memory  # opt-in: it costs memory at long windows
