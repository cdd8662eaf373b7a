"""``longseq-train-dna`` input errors: one line on stderr naming the flag or file, exit status 2,
before any model or Trainer is built, nothing written under --out-dir; --debug shows the traceback."""

from __future__ import annotations

import gzip
import logging
import re
import subprocess
import sys
from pathlib import Path

import lightning  # noqa: F401 (its log handler binds the stderr of the moment it is imported: not a test's)
import pytest
import yaml

from longseq.training.errors import UserError

from genomics.cli import train_dna

from .dna_data import random_dna, write_fasta
from .test_resume import TINY
from .tiny_runs import train_tiny


@pytest.fixture
def no_model(monkeypatch):
    """Input errors must come before any model or Trainer is built."""
    import lightning

    from genomics.models.classifier import DNAClassifier
    from genomics.models.language_model import DNALanguageModel

    def refuse(*args, **kwargs):
        raise AssertionError("a model or Trainer was built before the input was checked")

    for cls in (DNAClassifier, DNALanguageModel, lightning.Trainer):
        monkeypatch.setattr(cls, "__init__", refuse)


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    write_fasta(tmp_path / "genome.fa", {"chr": random_dna(600, 3)})
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    return tmp_path


def _error(argv: list[str], capsys, out_dir: Path) -> str:
    """The one stderr line of ``main(argv)``, which must exit with status 2 and write nothing."""
    with pytest.raises(SystemExit) as exit_info:
        train_dna.main([*argv, "--out-dir", str(out_dir)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("longseq-train-dna: error: "), err
    assert not out_dir.exists(), f"{argv} wrote to --out-dir"
    return err[0].removeprefix("longseq-train-dna: error: ")


@pytest.mark.parametrize("argv,message", [
    (["--seq-len", "0"], "--seq-len: must be a positive whole number, got 0"),
    (["--batch-size", "0"], "--batch-size: must be a positive whole number, got 0"),
    (["--max-steps", "-1"], "--max-steps: must be a positive whole number, got -1"),
    (["--num-workers", "-1"], "--num-workers: must be >= 0, got -1"),
    (["--ckpt-every-steps", "0"], "--ckpt-every-steps: must be a positive whole number, got 0"),
    (["--ckpt-every-minutes", "0"], "--ckpt-every-minutes: must be > 0, got 0"),
    (["--seed", "-3"], "--seed: must be >= 0, got -3"),
    (["--max-time", "90"], "--max-time: expected DD:HH:MM:SS (e.g. 00:01:30:00), got '90'"),
    (["--task", "classification", "--data", "seqs.csv", "--seq-len", "0"],
     "--seq-len: must be a positive whole number, got 0"),
    (["--task", "classification", "--data", "seqs.csv", "--batch-size", "0"],
     "--batch-size: must be a positive whole number, got 0"),
    (["--init-from", "a.ckpt", "--ckpt-path", "b.ckpt"], "--init-from, --ckpt-path: exclude each other"),
])
def test_flag_errors(argv, message, work, capsys, no_model):
    assert _error(["--fasta", str(work / "genome.fa")] * ("--data" not in argv) + argv, capsys,
                  work / "out").startswith(message)


@pytest.mark.parametrize("section,key,value,message", [
    ("schedule", "seq_len", 0, "schedule.seq_len: must be >= 2, got 0"),
    ("schedule", "batch_size", -2, "schedule.batch_size: must be >= 1, got -2"),
    ("task", "max_steps", "ten", "task.max_steps: must be a whole number, got 'ten'"),
    ("task", "lr", -0.1, "task.lr: must be >= 0, got -0.1"),
    ("checkpoint", "every_minutes", 0, "checkpoint.every_minutes: must be a number > 0, got 0"),
    ("averaging", "ema_decay", 1.0, "averaging.ema_decay must be in [0, 1) (or null: off), got 1.0"),
    ("averaging", "ema_decay", "high", "averaging.ema_decay must be in [0, 1) (or null: off), got 'high'"),
])
def test_config_value_errors_name_file_and_key(section, key, value, message, work, capsys, no_model):
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg.setdefault(section, {})[key] = value
    (work / "bad.yaml").write_text(yaml.safe_dump(cfg))
    err = _error(["--fasta", str(work / "genome.fa"), "--config", str(work / "bad.yaml")], capsys, work / "out")
    assert err == f"{work / 'bad.yaml'}: {message}"


def test_classification_vocabulary_must_fit_the_tokenizer(work, capsys, no_model):
    """Kept soft-masking adds token ids: the default classification config's embedding
    (vocab_size 9) cannot hold them, which must fail before any model is built."""
    (work / "seqs.csv").write_text("sequence,label\n" + "".join(f"{random_dna(40, i)},{i % 2}\n" for i in range(8)))
    cfg = yaml.safe_load((Path(train_dna.__file__).parents[2] / "configs/genomics/classification.yaml").read_text())
    cfg["data"]["soft_mask"] = "keep"
    (work / "keep.yaml").write_text(yaml.safe_dump(cfg))
    err = _error(["--task", "classification", "--data", str(work / "seqs.csv"), "--config", str(work / "keep.yaml")],
                 capsys, work / "out")
    assert re.fullmatch(r"model\.vocab_size=9 but data\.soft_mask='keep' gives 14 token ids; set "
                        r"model\.vocab_size: 14", err), err


def test_a_flag_value_is_named_by_the_flag_never_replaced(work, capsys, no_model):
    err = _error(["--task", "needle", "--fasta", str(work / "genome.fa"), "--max-steps", "0"], capsys, work / "out")
    assert err.startswith("--max-steps: must be a positive whole number, got 0")


def _missing(folder: Path) -> Path:
    return folder / "missing.fa"


def _empty(folder: Path) -> Path:
    (folder / "empty.fa").write_text("")
    return folder / "empty.fa"


def _truncated_gzip(folder: Path) -> Path:
    data = gzip.compress((">chr\n" + "ACGT" * 5000 + "\n").encode())
    (folder / "cut.fa.gz").write_bytes(data[: len(data) // 2])
    return folder / "cut.fa.gz"


def _protein(folder: Path) -> Path:
    return write_fasta(folder / "protein.fa", {"P1": "MKVLAAGIVGLLLAEEFPQRSTWY" * 5})


def _unknown_suffix(folder: Path) -> Path:
    (folder / "notes.txt").write_text("chr1 ACGT\n")  # neither suffix nor content says FASTA/GenBank/FASTQ
    return folder / "notes.txt"


def _later_record_not_dna(folder: Path) -> Path:
    return write_fasta(folder / "later.fa", {"chr1": random_dna(300, 1), "chr2": "ACGTJJJJ" * 20})


@pytest.mark.parametrize("make,message", [
    (_missing, r"--fasta \S+missing\.fa: no such file$"),
    (_empty, r"--fasta \S+empty\.fa: empty file$"),
    (_truncated_gzip, r"--fasta '\S+cut\.fa\.gz': truncated or corrupt gzip stream"),
    (_protein, r"--fasta \S+protein\.fa: record 'P1' looks like protein, not DNA \(amino-acid letters E, F, I, L, P, "
               r"Q\)"),
    (_unknown_suffix, r"--fasta '\S+notes\.txt': cannot tell the format: the suffix '\.txt' is not known and the "
                      r"content \(first line 'chr1 ACGT'\) starts no record; accepted: FASTA \(.fa .fasta .fna"),
    (_later_record_not_dna, r"'\S+later\.fa': record 'chr2': invalid nucleotide 'J' at base 5 \(1-based\)"),
])
def test_genome_file_errors_before_the_model(make, message, work, capsys, no_model):
    path = make(work)
    err = _error(["--fasta", str(path), "--config", str(work / "tiny.yaml")], capsys, work / "out")
    assert re.match(message, err), err


def test_out_dir_that_is_a_file(work, capsys, no_model):
    (work / "taken").write_text("")
    with pytest.raises(SystemExit):
        train_dna.main(["--fasta", str(work / "genome.fa"), "--out-dir", str(work / "taken")])
    err = capsys.readouterr().err.strip()
    assert err == f"longseq-train-dna: error: --out-dir {work / 'taken'}: exists and is not a folder"


def test_checkpoint_file_errors(work, capsys, no_model):
    (work / "notes.ckpt").write_text("not a checkpoint\n")
    base = ["--fasta", str(work / "genome.fa"), "--config", str(work / "tiny.yaml")]
    err = _error([*base, "--ckpt-path", str(work / "missing.ckpt")], capsys, work / "out")
    assert err == f"--ckpt-path {work / 'missing.ckpt'}: no such checkpoint file"
    err = _error([*base, "--ckpt-path", str(work / "notes.ckpt")], capsys, work / "out")
    assert err.startswith(f"--ckpt-path {work / 'notes.ckpt'}: not a PyTorch checkpoint")
    err = _error([*base, "--init-from", str(work / "notes.ckpt")], capsys, work / "out")
    assert err.startswith(f"--init-from {work / 'notes.ckpt'}: not a PyTorch checkpoint")
    err = _error([*base, "--ckpt-path", "last"], capsys, work / "out")
    assert err.startswith(f"--ckpt-path last: no {work / 'out' / 'lm'}/version_*/checkpoints/last.ckpt")


def test_checkpoint_of_another_architecture_or_task(work, capsys):
    lm = Path(train_tiny("lm", work / "lm")["last_checkpoint"])  # dim 32 (tests.genomics.tiny_runs)
    capsys.readouterr()
    base = ["--fasta", str(work / "genome.fa"), "--config", str(work / "tiny.yaml"), "--max-steps", "2"]  # dim 16
    for flag, what in (("--ckpt-path", "the weights do not fit this run's model"),
                       ("--init-from", "the weights do not fit the model of this run")):
        err = _error([*base, flag, str(lm)], capsys, work / "out")
        assert err.startswith(f"{flag} {lm}: {what}; shape mismatch: backbone.backbone.embed.weight: "
                              f"checkpoint (9, 32), model (9, 16)"), err
        assert "size mismatch" not in err
    err = _error(["--task", "classification", "--data", "x.csv", "--ckpt-path", str(lm)], capsys, work / "out")
    assert err == f"--ckpt-path {lm}: a lm checkpoint; resume it with --task lm"
    err = _error(["--task", "needle", "--fasta", str(work / "genome.fa"), "--init-from", str(lm)], capsys, work / "out")
    assert err == f"--init-from {lm}: a lm checkpoint; --task needle continues only from a needle checkpoint"


def test_debug_shows_the_traceback(work, no_model):
    with pytest.raises(UserError, match="--seq-len: must be a positive whole number"):
        train_dna.main(["--seq-len", "0", "--debug"])


def test_seq_len_longer_than_the_genome(work, capsys, caplog):
    argv = ["--fasta", str(work / "genome.fa"), "--config", str(work / "tiny.yaml"), "--max-steps", "2",
            "--no-markov", "--no-warmup", "--seq-len", "4096", "--out-dir", str(work / "runs")]
    with caplog.at_level(logging.WARNING):
        s = train_dna.run(argv)
    assert (f"--seq-len 4,096 is longer than the genome allows: the longest training region of "
            f"{work / 'genome.fa'} is 480 bases; training windows are clipped to 480 bases and validation windows "
            f"to 120 (data.on_short: clip)") in caplog.text
    assert s["max_seq_len_trained"] == 480
    strict = yaml.safe_load(yaml.safe_dump(TINY))
    strict["data"]["on_short"] = "error"
    (work / "strict.yaml").write_text(yaml.safe_dump(strict))
    argv[argv.index(str(work / "tiny.yaml"))] = str(work / "strict.yaml")
    capsys.readouterr()
    with pytest.raises(SystemExit):
        train_dna.main(argv[:-2] + ["--out-dir", str(work / "strict_runs")])
    err = capsys.readouterr().err.strip()
    assert err.startswith("longseq-train-dna: error: ") and "is shorter than seq_len=4096" in err and "--seq-len" in err
    assert not (work / "strict_runs").exists()


def test_console_command_exit_status(tmp_path):
    command = Path(sys.executable).with_name("longseq-train-dna")
    proc = subprocess.run([str(command), "--batch-size", "0", "--out-dir", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "longseq-train-dna: error: --batch-size: must be a positive whole number, got 0\n"
    assert not (tmp_path / "out").exists()


def test_documented_cadence_flags_reach_the_config(capsys):
    assert train_dna.run(["--ckpt-every-steps", "100", "--ckpt-every-minutes", "5", "--print-config"]) is None
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["checkpoint"] == {"every_steps": 100, "every_minutes": 5.0}
