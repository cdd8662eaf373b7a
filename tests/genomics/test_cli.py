"""The genomics console commands: configs, --print-config, and 1-3 step runs of each command."""

import csv
import math
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from longseq.hardware import cpu_description
from longseq.training.config import ConfigError
from longseq.training.errors import UserError

from genomics.cli import bench_dna, eval_needle, score_dna, train_dna
from genomics.cli.train_config import TASKS, default_config_path, load_task_config

from .dna_data import random_dna, write_fasta

REPO = Path(__file__).resolve().parents[2]
COMMANDS = {"longseq-train-dna": train_dna, "longseq-score-dna": score_dna, "longseq-bench-dna": bench_dna,
            "longseq-eval-needle": eval_needle}


def _task_of(path: Path) -> str:
    return next((t for t in ("annotation", "classification", "needle") if t in path.stem), "lm")


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "genomics").glob("*.yaml")), ids=lambda p: p.name)
def test_configs_match_signatures(path):
    cfg = load_task_config(path, _task_of(path))
    assert cfg["model"] and cfg["trainer"]


def test_every_task_has_a_shipped_default_config():
    for task in TASKS:
        path = default_config_path(task)
        assert path.is_file() and _task_of(path) == task


def test_bad_config_key_is_named_with_file_and_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("model:\n  dim: 64\n  dimm: 64\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:3: model\.dimm: unknown key \(did you mean 'dim'\?\)"):
        load_task_config(tmp_path / "bad.yaml", "lm")
    with pytest.raises(ConfigError, match=r"bad\.yaml:3: model\.dimm"):
        train_dna.run(["--config", str(tmp_path / "bad.yaml"), "--print-config"])


def test_keys_the_script_sets_are_refused(tmp_path):
    (tmp_path / "len.yaml").write_text("data:\n  seq_len: 512\n")
    with pytest.raises(ConfigError, match=r"len\.yaml:2: data\.seq_len: set schedule\.seq_len"):
        load_task_config(tmp_path / "len.yaml", "lm")
    (tmp_path / "cls.yaml").write_text("model:\n  num_classes: 3\n")
    with pytest.raises(ConfigError, match=r"cls\.yaml:2: model\.num_classes: the data module gives it"):
        load_task_config(tmp_path / "cls.yaml", "classification")
    (tmp_path / "sched.yaml").write_text("schedule:\n  seq_len: 512\n")
    with pytest.raises(ConfigError, match=r"unknown section 'schedule'"):
        load_task_config(tmp_path / "sched.yaml", "classification")


def test_flag_for_another_task_is_an_error():
    with pytest.raises(ConfigError, match=r"--join-records: not used by --task needle"):
        train_dna.run(["--task", "needle", "--join-records", "--print-config"])
    with pytest.raises(ConfigError, match=r"--fasta: not used by --task classification; --task classification "
                                          r"reads its labelled sequences from --data$"):
        train_dna.run(["--task", "classification", "--fasta", "g.fa", "--print-config"])
    with pytest.raises(ConfigError, match=r"--data: not used by --task annotation; --task annotation reads its "
                                          r"genome from --fasta$"):
        train_dna.run(["--task", "annotation", "--data", "g.fna.gz", "--gff", "g.gff.gz", "--print-config"])


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_console_command_help(name):
    command = Path(sys.executable).with_name(name)
    proc = subprocess.run([str(command), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"usage: {name}" in proc.stdout


def test_console_command_print_config_exits_zero(tmp_path):
    command = Path(sys.executable).with_name("longseq-train-dna")
    proc = subprocess.run([str(command), "--seq-len", "262144", "--print-config"], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(proc.stdout)["schedule"]["seq_len"] == 262144


def _print_config(argv: list[str], capsys) -> dict:
    assert train_dna.run([*argv, "--print-config"]) is None
    return yaml.safe_load(capsys.readouterr().out)


def test_print_config_merges_flags_before_any_data_work(tmp_path, monkeypatch, capsys):
    def no_training(*args, **kwargs):
        raise AssertionError("--print-config must exit before data or models")

    monkeypatch.setattr(train_dna, "_train", no_training)
    monkeypatch.setattr(train_dna, "build", no_training)
    cfg = _print_config(["--seq-len", "262144", "--fasta", str(tmp_path / "missing.fa")], capsys)
    assert cfg["schedule"]["seq_len"] == 262144 and cfg["data"]["fasta"] == [str(tmp_path / "missing.fa")]
    assert cfg["model"]["objective"] == "causal"  # tiny.yaml, the lm default
    # the printed config is a config: it loads back and prints the same
    (tmp_path / "printed.yaml").write_text(yaml.safe_dump(cfg))
    assert load_task_config(tmp_path / "printed.yaml", "lm") == cfg


def test_trainer_precedence_defaults_then_yaml_then_flags(tmp_path, capsys):
    (tmp_path / "t.yaml").write_text("trainer:\n  gradient_clip_val: 0.5\n  max_time: '00:00:01:00'\n"
                                     "  enable_progress_bar: false\n")
    cfg = _print_config(["--config", str(tmp_path / "t.yaml"), "--max-time", "00:00:02:00", "--precision",
                         "bf16-mixed", "--no-warmup", "--seq-len", "8192"], capsys)
    trainer = cfg["trainer"]
    assert trainer["gradient_clip_val"] == 0.5 and trainer["enable_progress_bar"] is False  # YAML over defaults
    assert trainer["num_sanity_val_steps"] == 0 and trainer["accelerator"] == "auto"  # defaults kept
    assert trainer["max_time"] == "00:00:02:00" and trainer["precision"] == "bf16-mixed"  # flags over YAML
    assert cfg["schedule"] == {"seq_len": 8192, "start_len": 8192}  # --no-warmup


def _documented_commands() -> list[list[str]]:
    lines = [line.split("#")[0].strip() for line in train_dna.__doc__.splitlines()]
    return [shlex.split(line)[2:] for line in lines if line.startswith("python scripts/train_dna.py")]


def test_help_documents_every_task():
    commands = _documented_commands()
    assert len(commands) >= 6
    assert {argv[argv.index("--task") + 1] for argv in commands if "--task" in argv} == set(TASKS) - {"lm"}


def test_scripts_are_thin_wrappers():
    import ast

    for name, module in COMMANDS.items():
        script = REPO / "scripts" / f"{module.__name__.rsplit('.', 1)[1]}.py"
        text = script.read_text()
        assert f":mod:`{module.__name__}`" in ast.get_docstring(ast.parse(text))  # usage text lives there, once
        assert f"from {module.__name__} import main" in text and "sys.path" not in text


@pytest.mark.parametrize("argv", _documented_commands(), ids=" ".join)
def test_documented_command_runs_with_its_default_config(argv, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # the documented relative paths (configs/genomics/...)
    cfg = _print_config(argv, capsys)
    task = argv[argv.index("--task") + 1] if "--task" in argv else "lm"
    config = argv[argv.index("--config") + 1] if "--config" in argv else default_config_path(task)
    assert set(cfg) >= {"model", "data", "task", "trainer"}
    expected = load_task_config(config, task)["model"]
    for value in (argv[i + 1] for i, a in enumerate(argv) if a == "--set"):  # --set model.KEY=VALUE wins
        key, _, raw = value.partition("=")
        if key.startswith("model."):
            expected[key.removeprefix("model.")] = yaml.safe_load(raw)
    assert cfg["model"].items() >= expected.items()


def _small_lm_config(tmp_path: Path) -> Path:
    cfg = yaml.safe_load((REPO / "configs" / "genomics" / "tiny.yaml").read_text())
    cfg["schedule"].update(start_len=128, warmup_tokens_per_step=512)
    cfg["trainer"].pop("max_time", None)
    cfg["task"]["warmup_steps"] = 1
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_two_step_lm_training_and_reload(tmp_path, monkeypatch):
    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    fasta = write_fasta(tmp_path / "g.fa", {"chr": random_dna(12000, 1)})
    summary = train_dna.run([
        "--fasta", str(fasta), "--seq-len", "512", "--max-steps", "2", "--config", str(_small_lm_config(tmp_path)),
        "--out-dir", str(tmp_path / "runs"),
    ])
    assert summary["steps"] == 2 and summary["max_seq_len_trained"] == 512  # warm-up 128 -> 512
    assert summary["train_tokens"] == 128 * 4 + 512 and summary["tokens_per_s"] > 0
    assert 1.5 < summary["best_val_bpb"] < 3.0  # random DNA: about 2 bits per base
    assert summary["markov_order"] >= 0 and 1.9 < summary["markov_val_bpb"] < 2.2
    rows = list(csv.DictReader(open(summary["metrics_csv"])))
    assert any(r.get("val/bpb") for r in rows) and any(r.get("tok_s") for r in rows)
    saved = load_task_config(summary["config"], "lm")  # the run's merged config, reusable with --config
    assert saved["schedule"]["seq_len"] == 512 and saved["data"]["fasta"] == [str(fasta)]
    from genomics.tasks import LanguageModelTask

    model = LanguageModelTask.load_from_checkpoint(summary["checkpoint"], map_location="cpu")
    assert model.backbone.backbone.dim == 128
    with torch.no_grad():
        assert model(torch.randint(0, 4, (1, 300))).shape == (1, 300, 9)
    result = score_dna.run(["--ckpt", summary["checkpoint"], "--fasta", str(fasta), "--window", "4096",
                            "--out", str(tmp_path / "scores")])
    ll = np.load(tmp_path / "scores" / "chr.npy")
    assert ll.shape == (12000,) and np.isnan(ll[0]) and np.isfinite(ll[1:]).all()
    assert abs(result["chr"] + ll[1:].mean()) < 1e-4 and 1.5 < result["chr"] < 3.0


def test_two_step_classification_with_default_config(tmp_path, monkeypatch, caplog):
    rows = ["sequence,label"] + [f"{random_dna(60, i)},{i % 2}" for i in range(24)]
    (tmp_path / "small.csv").write_text("\n".join(rows) + "\n")
    # The flag with the opt-out set: the run says it had no effect (and this test process's
    # malloc stays as it was for the tests after it).
    monkeypatch.setenv("LONGSEQ_REUSE_FREED_MEMORY", "0")
    summary = train_dna.run(["--task", "classification", "--data", str(tmp_path / "small.csv"), "--max-steps", "2",
                             "--seq-len", "50", "--out-dir", str(tmp_path / "runs"), "--reuse-freed-memory"])
    assert summary["steps"] == 2 and math.isfinite(summary["best_val_loss"])
    assert summary["max_seq_len_trained"] == 50  # --seq-len cuts classification sequences (data.max_len)
    assert summary["reuse_freed_memory"] is False and "--reuse-freed-memory had no effect" in caplog.text
    rows = list(csv.DictReader(open(summary["metrics_csv"])))
    assert any(r.get("val/mcc") for r in rows) and any(r.get("val/auroc") for r in rows)


def test_two_step_annotation_with_default_config(tmp_path, monkeypatch):
    from Bio import SeqIO
    from Bio.Seq import Seq
    from Bio.SeqFeature import FeatureLocation, SeqFeature
    from Bio.SeqRecord import SeqRecord

    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    rec = SeqRecord(Seq(random_dna(6000, 2)), id="c1", annotations={"molecule_type": "DNA"})
    rec.features = [SeqFeature(FeatureLocation(s, s + 300, 1), type=t)
                    for s, t in ((500, "gene"), (2000, "CDS"), (5500, "CDS"))]
    SeqIO.write([rec], tmp_path / "a.gb", "genbank")
    summary = train_dna.run(["--task", "annotation", "--fasta", str(tmp_path / "a.gb"), "--seq-len", "256",
                             "--max-steps", "2", "--out-dir", str(tmp_path / "runs")])
    assert summary["steps"] == 2 and summary["max_seq_len_trained"] == 256
    assert math.isfinite(summary["best_val_loss"])


def test_two_step_needle(tmp_path, monkeypatch):
    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    fasta = write_fasta(tmp_path / "g.fa", {"chr": random_dna(30000, 3)})
    cfg = yaml.safe_load((REPO / "configs" / "genomics" / "needle_global.yaml").read_text())
    cfg["model"].update(dim=32, heads=2, window=16)
    cfg["data"].update(eval_seq_len=4096, min_distance=1500, train_samples=4, val_samples=2, test_samples=3)
    (tmp_path / "n.yaml").write_text(yaml.safe_dump(cfg))
    summary = train_dna.run(["--task", "needle", "--fasta", str(fasta), "--seq-len", "512", "--max-steps", "2",
                             "--config", str(tmp_path / "n.yaml"), "--out-dir", str(tmp_path / "runs")])
    assert summary["steps"] == 2 and summary["needle_eval_seq_len"] == 4096
    assert 0.0 <= summary["needle_test_acc"] <= 1.0
    # longseq-eval-needle draws the same fixed test windows as the training run's test step
    rows = eval_needle.run(["--ckpt", summary["checkpoint"], "--fasta", str(fasta), "--lengths", "4096",
                            "--min-distance", "1500", "--samples", "3", "--out", str(tmp_path / "eval")])
    assert [(r["seq_len"], r["min_distance"], r["samples"]) for r in rows] == [(4096, 1500, 3)]
    assert eval_needle.min_distance_for(1_048_576, None) == 500_000  # the reference figure at 1M
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
    again = train_dna.run([*common, "--max-steps", "1", "--no-warmup", "--init-from", summary["checkpoint"],
                           "--out-dir", str(tmp_path / "runs2")])
    assert again["steps"] == 1 and again["max_seq_len_trained"] == 512
    before, after = (torch.load(c, weights_only=False)["state_dict"]
                     for c in (summary["checkpoint"], again["checkpoint"]))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(UserError, match="exclude each other"):
        train_dna.run([*common, "--init-from", summary["checkpoint"], "--ckpt-path", summary["checkpoint"]])


def test_bench_dna_tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))  # inherited by the child processes
    for name in ("LONGSEQ_REUSE_FREED_MEMORY", "GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "m.yaml").write_text("model:\n  dim: 32\n  depth: 1\n  heads: 2\n  window: 16\n")
    rows = bench_dna.run(["--config", str(tmp_path / "m.yaml"), "--seq-lens", "256", "--steps", "1",
                          "--reuse-freed-memory", "--out", str(tmp_path / "bench")])
    assert [(r["seq_len"], r["precision"], r["status"]) for r in rows] == [(256, "fp32", "ok"),
                                                                           (256, "bf16-mixed", "ok")]
    assert all(r["tokens_per_s"] > 0 and 0 < r["peak_rss_gb"] < 8 and r["params"] > 1000 for r in rows)
    assert all(r["matmul_gflops"] > 1 for r in rows)  # the reference is measured in the same run
    assert all(0.0 <= r["sys_share"] <= 1.0 for r in rows)
    glibc = platform.libc_ver()[0] == "glibc"
    assert all(r["reuse_freed_memory"] is glibc for r in rows)  # the flag reached the timed processes
    table = list(csv.DictReader(open(tmp_path / "bench" / "bench_dna.csv")))
    assert len(table) == 2 and (tmp_path / "bench" / "bench_dna.png").stat().st_size > 5000
    assert all(r["cpu"] == cpu_description() for r in table)  # figures name the machine they came from
    assert not bench_dna.parse_args([]).reuse_freed_memory  # opt-in: it costs memory at long windows


def test_bench_dna_sequence_parallel_row(tmp_path, monkeypatch):
    """A window split over 2 processes: its own row, each rank's traffic at least the gradient
    all-reduce (4 bytes a parameter), the summed RSS of both processes; a model with an LSH
    layer is refused before anything runs."""
    from longseq.training.errors import UserError

    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "m.yaml").write_text("model:\n  dim: 32\n  depth: 1\n  heads: 2\n  window: 16\n")
    rows = bench_dna.run(["--config", str(tmp_path / "m.yaml"), "--seq-lens", "300", "--precisions", "fp32",
                          "--sequence-parallel", "1", "2", "--steps", "1", "--out", str(tmp_path / "bench")])
    assert [(r["processes"], r["status"]) for r in rows] == [(1, "ok"), (2, "ok")]
    one, two = rows
    assert two["params"] == one["params"] and two["sent_mb_per_step"] >= 4 * two["params"] / 2**20 - 1e-4
    assert two["peak_rss_gb"] < two["peak_rss_total_gb"] <= 2 * two["peak_rss_gb"] + 2e-3  # each rounded to 3 places
    table = list(csv.DictReader(open(tmp_path / "bench" / "bench_dna.csv")))
    assert [r["processes"] for r in table] == ["1", "2"] and table[0]["sent_mb_per_step"] == ""
    with pytest.raises(UserError, match=r"--sequence-parallel 2: .*layer 0"):
        bench_dna.run(["--seq-lens", "300", "--sequence-parallel", "2", "--set", "model.lsh_layers=[0]",
                       "--out", str(tmp_path / "no")])
    assert not (tmp_path / "no").exists()
