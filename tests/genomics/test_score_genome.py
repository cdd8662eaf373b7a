"""longseq-score-dna on a genome the model was not trained on: the genome-wide line, the Markov
baseline fitted on the training region and scored on the same bases, --records errors,
shortened per-record lines, and the documented commands."""

from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from genomics.baselines import fit_training_genome_markov
from genomics.cli import score_dna
from genomics.io import build_genome_cache
from genomics.models import load_model

from .dna_data import random_dna, write_fasta
from .tiny_runs import train_tiny

REPO = Path(__file__).resolve().parents[2]
GENOME_LINE = re.compile(r"^genome-wide: ([\d,]+) bases scored in (\d+) records?, ([\d.]+) bits/base \(weighted by "
                         r"length\)(?:   \(order-(\d+) Markov baseline fitted on the training region of (.+): "
                         r"([\d.]+) on the same bases\))?$", re.MULTILINE)
# A "foreign" genome: GC-rich, unlike the uniform training genome; chr2 holds a run of N.
FOREIGN = {"chr1": random_dna(5000, 61, alphabet="GGGCCCAT"),
           "chr2": random_dna(2000, 62, alphabet="GGGCCCAT") + "N" * 100 + random_dna(1900, 63, alphabet="GGGCCCAT"),
           "plasmid": random_dna(800, 64, alphabet="GGGCCCAT")}


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory) -> tuple[Path, str]:
    """(root, checkpoint): a 2-step LM trained on ``root/train.fa``; ``root/genome.fa.gz`` is FOREIGN."""
    root = tmp_path_factory.mktemp("score")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LONGSEQ_CACHE_DIR", str(root / "cache"))
        summary = train_tiny("lm", root)
    write_fasta(root / "genome.fa.gz", FOREIGN, gz=True)
    return root, summary["checkpoint"]


@pytest.fixture(autouse=True)
def _cache(lm_run, monkeypatch):
    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(lm_run[0] / "cache"))


def _score(lm_run, tmp_path, *extra: str) -> tuple[dict, dict]:
    """(per-record bits per base, summary.json) of scoring FOREIGN with windows of 1,024."""
    root, ckpt = lm_run
    result = score_dna.run(["--ckpt", ckpt, "--fasta", str(root / "genome.fa.gz"), "--window", "1024",
                            "--out", str(tmp_path / "scores"), *extra])
    return result, json.loads((tmp_path / "scores" / "summary.json").read_text())


def test_genome_wide_line_and_markov_baseline_on_the_same_bases(lm_run, tmp_path, capsys):
    root, ckpt = lm_run
    result, summary = _score(lm_run, tmp_path)
    out = capsys.readouterr().out
    match = GENOME_LINE.search(out)
    assert match, out
    bases, records, bpb, order, where, markov_bpb = match.groups()
    # the model's figures: every scored base of every record, weighted by length
    lls = {name: np.load(tmp_path / "scores" / f"{name}.npy") for name in FOREIGN}
    scored = {name: np.isfinite(ll) for name, ll in lls.items()}
    n = sum(int(s.sum()) for s in scored.values())
    assert int(bases.replace(",", "")) == n == summary["bases_scored"] == sum(len(s) - 1 for s in FOREIGN.values()) - 100
    assert int(records) == 3 and summary["records"] == 3
    total = -sum(float(ll[scored[k]].sum()) for k, ll in lls.items())
    assert summary["bits_per_base"] == pytest.approx(total / n) and float(bpb) == pytest.approx(total / n, abs=1e-4)
    assert result == pytest.approx({k: -float(ll[scored[k]].mean()) for k, ll in lls.items()})
    # the baseline: fitted on the training region of the training genome, scored on the same bases
    markov = summary["markov"]
    assert where == str(root / "train.fa") and markov["training_genome"] == [str(root / "train.fa")]
    assert markov["train_bases"] == 10800 and markov["order_source"] == "validation"  # first 90% of 12,000
    assert int(order) == markov["order"] and math.isfinite(markov["bits_per_base"])
    assert float(markov_bpb) == pytest.approx(markov["bits_per_base"], abs=1e-4)
    fitted = fit_training_genome_markov(load_model(ckpt).info.data_config)
    assert fitted.order == markov["order"]
    genome = build_genome_cache(root / "genome.fa.gz")
    own = 0.0
    for name in FOREIGN:
        lp, ok = fitted.model.log2_probs(genome.window(name, 0, genome.record(name).length))
        assert ok[scored[name]].all()
        own -= float(lp[scored[name]].sum())
    assert markov["bits_per_base"] == pytest.approx(own / n)
    # a chain fitted on uniform DNA is close to 2 bits on GC-rich DNA (its composition does not carry over)
    assert 1.9 < markov["bits_per_base"] < 2.3
    table = (tmp_path / "scores" / "bits_per_base.tsv").read_text().splitlines()
    assert table[0].split("\t") == ["record", "length", "bases_scored", "bits_per_base", "markov_bits_per_base"]
    assert [line.split("\t")[0] for line in table[1:]] == list(FOREIGN)
    assert all(math.isfinite(float(v)) for line in table[1:] for v in line.split("\t")[1:])


def test_records_that_match_nothing_list_the_names_found(lm_run, tmp_path):
    with pytest.raises(SystemExit, match=r"^longseq-score-dna: error: --records nomatch matches no record of "
                                         r".*genome\.fa\.gz; its records: chr1, chr2, plasmid$"):
        _score(lm_run, tmp_path, "--records", "nomatch")
    with pytest.raises(SystemExit, match=r"--records chr1 chrX names unknown records \['chrX'\]"):
        _score(lm_run, tmp_path, "--records", "chr1", "chrX")


def test_unreadable_genomes_are_one_line_errors(lm_run, tmp_path, capsys):
    """A missing file, an unknown suffix whose content is no sequence format, duplicate record
    names and a GenBank record without sequence: one error line naming --fasta and the file,
    no traceback."""
    root, ckpt = lm_run
    (tmp_path / "genome.xyz").write_text("a\tACGT\n")
    write_fasta(tmp_path / "twice.fa", {"a": random_dna(300, 1)})
    (tmp_path / "twice.fa").write_text((tmp_path / "twice.fa").read_text() * 2)
    (tmp_path / "contig.gbk").write_text("LOCUS       NC_1  300000 bp    DNA     circular UNK 01-JAN-1980\n"
                                         "FEATURES             Location/Qualifiers\n"
                                         "CONTIG      join(CP009072.1:1..300000)\n//\n")
    for name, message in (("gone.fa", r"gone\.fa: no such file"),
                          ("genome.xyz", r"genome\.xyz.*cannot tell the format"),
                          ("twice.fa", r"twice\.fa.*'a'"),
                          ("contig.gbk", r"contig\.gbk': record 'NC_1' has no sequence \(a CONTIG-only GenBank")):
        with pytest.raises(SystemExit, match=rf"^longseq-score-dna: error: --fasta .*{message}") as exit_info:
            score_dna.main(["--ckpt", ckpt, "--fasta", str(tmp_path / name), "--no-markov",
                            "--out", str(tmp_path / "scores")])
        assert "\n" not in str(exit_info.value)


def test_records_whose_file_names_collide_each_keep_their_scores(lm_run, tmp_path):
    write_fasta(tmp_path / "pipes.fa", {"chr1|a": random_dna(600, 5), "chr1_a": random_dna(700, 6)})
    score_dna.run(["--ckpt", lm_run[1], "--fasta", str(tmp_path / "pipes.fa"), "--no-markov", "--window", "1024",
                   "--out", str(tmp_path / "scores")])
    sizes = sorted(np.load(f).size for f in (tmp_path / "scores").glob("*.npy"))
    assert sizes == [600, 700]


def test_records_subset_and_shortened_per_record_lines(lm_run, tmp_path, capsys):
    result, summary = _score(lm_run, tmp_path, "--records", "plasmid", "chr1", "--per-record", "1",
                                "--markov-order", "2")
    out = capsys.readouterr().out
    assert list(result) == ["chr1", "plasmid"] and summary["records"] == 2
    assert re.search(r"^chr1\t4,999\t[\d.]+\t[\d.]+$", out, re.MULTILINE)
    assert not re.search(r"^plasmid\t", out, re.MULTILINE)
    assert "... 1 more record in " in out and "bits_per_base.tsv" in out
    assert summary["markov"]["order"] == 2 and summary["markov"]["order_source"] == "fixed"
    assert GENOME_LINE.search(out).group(4) == "2"


def test_no_markov_and_a_moved_training_genome(lm_run, tmp_path, capsys):
    root, ckpt = lm_run
    result, summary = _score(lm_run, tmp_path, "--no-markov")
    assert "markov" not in summary and "Markov" not in capsys.readouterr().out
    moved = torch.load(ckpt, weights_only=True)
    moved["datamodule_hyper_parameters"]["fasta"] = [str(tmp_path / "gone.fa")]
    torch.save(moved, tmp_path / "moved.ckpt")
    with pytest.raises(SystemExit, match=r"Markov baseline: cannot read the training genome .*gone\.fa.* recorded in "
                                         r"--ckpt .*moved\.ckpt: .*pass --markov-fasta FILE or --no-markov"):
        score_dna.run(["--ckpt", str(tmp_path / "moved.ckpt"), "--fasta", str(root / "genome.fa.gz"),
                       "--out", str(tmp_path / "s")])
    score_dna.run(["--ckpt", str(tmp_path / "moved.ckpt"), "--fasta", str(root / "genome.fa.gz"), "--window", "1024",
                   "--markov-fasta", str(root / "train.fa"), "--out", str(tmp_path / "s")])
    again = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert again["markov"]["training_genome"] == [str(root / "train.fa")]


def test_a_reused_out_folder_keeps_only_this_runs_files(lm_run, tmp_path, capsys):
    out = tmp_path / "scores"
    _score(lm_run, tmp_path)
    assert {p.name for p in out.iterdir()} >= {"windows.tsv", "windows.png", "chr1.npy", "chr2.npy", "plasmid.npy"}
    (out / "notes.txt").write_text("mine")  # not an output of score_dna: never touched
    capsys.readouterr()
    _score(lm_run, tmp_path, "--no-markov", "--records", "chr1")
    assert sorted(p.name for p in out.iterdir()) == ["bits_per_base.tsv", "chr1.npy", "notes.txt", "summary.json"]
    assert (f"removed 4 file(s) of an earlier run in {out} that this run does not write: chr2.npy, plasmid.npy, "
            "windows.png, windows.tsv") in capsys.readouterr().err


def test_a_checkpoint_that_is_not_a_causal_lm_is_refused(lm_run, tmp_path):
    with pytest.raises(SystemExit, match=r"--ckpt .*nothing\.ckpt: no such checkpoint file"):
        score_dna.run(["--ckpt", str(tmp_path / "nothing.ckpt")])
    ckpt = torch.load(lm_run[1], weights_only=True)
    ckpt["hyper_parameters"]["model_config"]["objective"] = "masked"
    torch.save(ckpt, tmp_path / "masked.ckpt")
    with pytest.raises(SystemExit, match=r"masked\.ckpt holds a masked LM; scoring needs a causal LM"):
        score_dna.run(["--ckpt", str(tmp_path / "masked.ckpt"), "--fasta", str(lm_run[0] / "genome.fa.gz")])


def _documented_score_commands() -> list[list[str]]:
    docs = (REPO / "docs" / "genomics.md").read_text()
    section = re.search(r"^## Scoring a genome\s*$(.*?)(?=^## |\Z)", docs, re.MULTILINE | re.DOTALL).group(1)
    lines = [line.split("#")[0].strip() for line in section.splitlines()]
    lines += [line.strip() for line in score_dna.__doc__.splitlines()]
    return [shlex.split(line)[2:] for line in lines if line.startswith("python scripts/score_dna.py")]


def test_documented_commands_run(lm_run, monkeypatch, capsys):
    """The score_dna commands of docs/genomics.md and of the command's help, as written, from a
    folder holding runs/dna/lm/version_0/checkpoints/last.ckpt and genome.fa.gz (chr1 ...)."""
    monkeypatch.chdir(lm_run[0])
    commands = _documented_score_commands()
    assert len(commands) >= 3
    for argv in commands:
        score_dna.main(argv)
        assert GENOME_LINE.search(capsys.readouterr().out)
        assert json.loads(Path("runs/dna/scores/summary.json").read_text())["bases_scored"] > 0


# --- where the model wins: classes, bins and the plot

def test_repeat_masks_cover_copies_on_either_strand():
    from genomics.baselines.compare import repeat_masks
    from genomics.data.tokenizers import NucleotideTokenizer

    tok = NucleotideTokenizer()
    copy = random_dna(40, 71)
    rc = copy[::-1].translate(str.maketrans("ACGT", "TGCA"))
    a = random_dna(300, 72) + copy + random_dna(300, 73)      # copy at 300..340
    b = random_dna(100, 74) + rc + random_dna(100, 75)        # its reverse complement at 100..140
    lone = random_dna(200, 76) + "N" + copy[:31] + "N" + random_dna(50, 77)  # 31 bases of it: shorter than k
    ref = random_dna(500, 78) + a[600:640]                    # a's bases 600..640 copied in the reference
    masks = repeat_masks([tok.encode(a), tok.encode(b), tok.encode(lone)], [tok.encode(ref)])
    want_a = np.zeros(len(a), bool)
    want_a[300:340] = want_a[600:640] = True
    want_b = np.zeros(len(b), bool)
    want_b[100:140] = True
    assert np.array_equal(masks[0], want_a) and np.array_equal(masks[1], want_b) and not masks[2].any()
    n_run = tok.encode(a[:20] + "N" + a[21:])  # an N inside the copy breaks the 32-mers through it
    assert not repeat_masks([n_run])[0].any()


def test_class_margins_and_bins_are_the_means_they_name():
    from genomics.baselines.compare import ScoredRegion, bin_table, class_margins

    rng = np.random.default_rng(5)
    model, markov = rng.uniform(0, 3, 2500), rng.uniform(1, 2, 2500)
    model[0] = np.nan
    markov[7] = np.nan
    repeat = np.zeros(2500, bool)
    repeat[1000:1500] = True
    region = ScoredRegion("chr", 100, model, markov, {"repeat": repeat, "unique": ~repeat})
    rows = {r["class"]: r for r in class_margins([region])}
    ok = np.isfinite(model) & np.isfinite(markov)
    assert rows["all"]["bases"] == 2498 and rows["repeat"]["bases"] == 500 and rows["unique"]["bases"] == 1998
    for name, keep in (("all", ok), ("repeat", ok & repeat), ("unique", ok & ~repeat)):
        assert rows[name]["bits_per_base"] == pytest.approx(model[keep].mean())
        assert rows[name]["margin"] == pytest.approx(model[keep].mean() - markov[keep].mean())
        assert rows[name]["share"] == pytest.approx(keep.sum() / ok.sum())
    bins = bin_table([region], 1000)
    assert [(b["start"], b["end"], b["bases_scored"]) for b in bins] == [(100, 1100, 998), (1100, 2100, 1000),
                                                                          (2100, 2600, 500)]
    assert bins[1]["repeat_share"] == 0.5 and bins[1]["margin"] == pytest.approx(
        model[1000:2000].mean() - markov[1000:2000].mean())


def test_region_val_scores_the_validation_region_with_classes_bins_and_plot(lm_run, tmp_path, capsys):
    root, ckpt = lm_run
    out = tmp_path / "val"
    result = score_dna.run(["--ckpt", ckpt, "--region", "val", "--window", "512", "--bin-size", "300",
                            "--out", str(out)])
    printed = capsys.readouterr().out
    assert list(result) == ["chr:10801-12000"]  # the last 10% of the 12,000-base training record
    summary = json.loads((out / "summary.json").read_text())
    assert summary["genome"] == str(root / "train.fa") and summary["bases_scored"] == 1199
    classes = {c["class"]: c for c in summary["classes"]}
    assert set(classes) == {"all", "unique"}  # random DNA has no 32-mer copies; a FASTA has no annotation
    assert classes["all"]["bits_per_base"] == pytest.approx(summary["bits_per_base"])
    assert classes["all"]["markov_bits_per_base"] == pytest.approx(summary["markov"]["bits_per_base"])
    assert "where the model wins" in printed and re.search(r"^  unique\s+[\d,]+\s+[\d.]+%", printed, re.MULTILINE)
    table = (out / "windows.tsv").read_text().splitlines()
    assert table[0].split("\t")[:7] == ["record", "start", "end", "bases_scored", "bits_per_base",
                                        "markov_bits_per_base", "margin"]
    assert [line.split("\t")[1:3] for line in table[1:]] == [["10800", "11100"], ["11100", "11400"],
                                                             ["11400", "11700"], ["11700", "12000"]]
    assert (out / "windows.png").stat().st_size > 10_000
    with pytest.raises(SystemExit, match="--region val scores the checkpoint's own validation region; drop --fasta"):
        score_dna.run(["--ckpt", ckpt, "--region", "val", "--fasta", str(root / "genome.fa.gz")])
    with pytest.raises(SystemExit, match=r"--bin-size must be >= 1, got 0"):
        score_dna.run(["--ckpt", ckpt, "--bin-size", "0"])


def test_an_annotated_genome_adds_gene_classes(lm_run, tmp_path, capsys):
    from .tiny_runs import write_annotated_genbank

    root, ckpt = lm_run
    gb = write_annotated_genbank(tmp_path / "annotated.gb")
    score_dna.run(["--ckpt", ckpt, "--fasta", str(gb), "--window", "1024", "--out", str(tmp_path / "gb")])
    classes = {c["class"]: c for c in json.loads((tmp_path / "gb" / "summary.json").read_text())["classes"]}
    assert classes["CDS"]["bases"] == 600 and classes["gene"]["bases"] == 300
    assert classes["intergenic"]["bases"] == 5999 - 900
    header = (tmp_path / "gb" / "windows.tsv").read_text().splitlines()[0].split("\t")
    assert header[-5:] == ["repeat_share", "unique_share", "CDS_share", "gene_share", "intergenic_share"]
