"""The gene-start classification table: windows before each CDS on its strand, background
windows that overlap none of them, splits by input, and the command's errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from genomics.cli import make_gene_starts
from genomics.data.gene_starts import BACKGROUND, GENE_START, gene_start_rows

from .dna_data import random_dna

COMPLEMENT = str.maketrans("ACGT", "TGCA")


def _record(seq: str, cds: list[tuple[int, int, int]], name: str = "c1"):
    from Bio.Seq import Seq
    from Bio.SeqFeature import BeforePosition, CompoundLocation, FeatureLocation, SeqFeature
    from Bio.SeqRecord import SeqRecord

    rec = SeqRecord(Seq(seq), id=name, annotations={"molecule_type": "DNA"})
    rec.features = [SeqFeature(FeatureLocation(s, e, strand), type="CDS") for s, e, strand in cds]
    # a spliced minus-strand CDS: its first base is the end of the last part
    rec.features.append(SeqFeature(CompoundLocation([FeatureLocation(3400, 3500, -1), FeatureLocation(3300, 3350, -1)]),
                                   type="CDS"))
    rec.features.append(SeqFeature(FeatureLocation(100, 4000, 1), type="gene"))  # not a CDS: no row
    # a partial CDS ('<4201..4500'): its start codon is not in the record, so no row
    rec.features.append(SeqFeature(FeatureLocation(BeforePosition(4200), 4500, 1), type="CDS"))
    return rec


def test_windows_end_before_each_start_on_its_strand():
    seq = random_dna(6000, 11)
    rec = _record(seq, [(500, 900, 1), (1500, 2000, -1), (500, 700, 1), (50, 400, 1)])  # (500, 700): same start
    rows = list(gene_start_rows([(rec, "train")], length=200, seed=3))
    starts = [r for r in rows if r.label == GENE_START]
    by_id = {r.id: r.sequence for r in starts}
    assert by_id == {
        "c1:301-500(+)": seq[300:500],                               # plus strand: the 200 bases before base 500
        "c1:2001-2200(-)": seq[2000:2200].translate(COMPLEMENT)[::-1],  # minus strand: after its end, reversed
        "c1:3501-3700(-)": seq[3500:3700].translate(COMPLEMENT)[::-1],  # spliced: from the 5' part's end
    }  # (50, 400): its window would start before the record; the duplicate start is kept once
    background = [r for r in rows if r.label == BACKGROUND]
    assert len(background) == len(starts) and all(r.split == "train" for r in rows)
    spans = [(300, 500), (2000, 2200), (3500, 3700)]
    for r in background:
        coords, strand = r.id.split(":")[1].split("(")
        start, end = (int(v) for v in coords.split("-"))
        start -= 1
        assert end - start == 200 and all(end <= a or start >= b for a, b in spans)
        want = seq[start:end] if strand == "+)" else seq[start:end].translate(COMPLEMENT)[::-1]
        assert r.sequence == want
    assert rows == list(gene_start_rows([(rec, "train")], length=200, seed=3))  # seeded
    assert rows != list(gene_start_rows([(rec, "train")], length=200, seed=4))


def test_windows_with_n_are_skipped_and_length_is_checked():
    seq = random_dna(4000, 12)
    seq = seq[:350] + "N" + seq[351:]  # inside the window before the CDS at 500
    rows = list(gene_start_rows([(_record(seq, [(500, 900, 1)]), "val")], length=200))
    assert [r.id for r in rows if r.label == GENE_START] == ["c1:3501-3700(-)"]
    assert all("N" not in r.sequence and r.split == "val" for r in rows)
    with pytest.raises(ValueError, match="length must be >= 1"):
        list(gene_start_rows([], length=0))


def test_command_writes_the_shipped_yeast_table(tmp_path, capsys):
    out = tmp_path / "starts.csv"
    make_gene_starts.main(["--genbank", "yeast:chr01", "yeast:chr02", "yeast:chr03", "--val", "yeast:chr02",
                           "--test", "yeast:chr03", "--length", "80", "--out", str(out)])
    printed = capsys.readouterr().out
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["id", "sequence", "label", "split"]
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    for split in ("train", "val", "test"):
        labels = [r["label"] for r in rows if r["split"] == split]
        assert labels.count(GENE_START) == labels.count(BACKGROUND) > 50
        assert f"{split} {labels.count(GENE_START):,} gene_start" in printed
    assert all(len(r["sequence"]) == 80 and set(r["sequence"]) <= set("ACGT") for r in rows)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize(("argv", "message"), [
    (["--genbank", "{tmp}/none.gb"], "--genbank {tmp}/none.gb: no such file"),
    (["--genbank", "yeast:chr99"], "--genbank yeast:chr99: chromosome must be one of"),
    (["--genbank", "yeast:chr01", "--val", "yeast:chr02"], "--val: yeast:chr02: not among the inputs"),
    (["--genbank", "yeast:chr01", "--val", "yeast:chr01", "--test", "yeast:chr01"], "--val and --test share"),
    (["--length", "0"], "--length: must be a positive whole number"),
    (["--genbank", "{tmp}/plain.gb"], "--genbank {tmp}/plain.gb: no CDS feature"),
])
def test_errors_are_one_line(argv, message, tmp_path, capsys):
    from Bio import SeqIO

    from .tiny_runs import write_annotated_genbank

    write_annotated_genbank(tmp_path / "annotated.gb")
    rec = next(SeqIO.parse(tmp_path / "annotated.gb", "genbank"))
    rec.features = []
    SeqIO.write([rec], tmp_path / "plain.gb", "genbank")
    with pytest.raises(SystemExit) as exc:
        make_gene_starts.main([a.replace("{tmp}", str(tmp_path)) for a in argv] + ["--out", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "Traceback" not in err
    err = err.splitlines()[-1]  # after the progress bar
    assert err.startswith("longseq-make-gene-starts: error: ") and message.replace("{tmp}", str(tmp_path)) in err
    assert not Path(tmp_path / "o.csv").exists()


def test_documented_commands_run(tmp_path, monkeypatch):
    """The section's commands as written, in a folder holding a (tiny) default LM run at
    runs/dna/lm/version_0, with their default configs and a 2-step budget on 32 bases added."""
    import shlex

    from genomics.cli import train_dna

    from .labelled_data import documented_commands
    from .tiny_runs import train_tiny

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    train_tiny("lm", tmp_path)  # runs/dna/lm/version_0/checkpoints/last.ckpt
    text = (Path(__file__).resolve().parents[2] / "docs" / "genomics.md").read_text()
    section = text[text.index("## Fine-tuning on a task from the shipped genomes"):]
    make = next(line for line in section.splitlines() if line.startswith("python scripts/make_gene_starts.py"))
    make_gene_starts.main(shlex.split(make)[2:])
    assert (tmp_path / "gene_starts.csv").stat().st_size > 1_000_000
    commands = documented_commands("## Fine-tuning on a task from the shipped genomes")
    assert [] in commands  # the language model the last run starts from (train_tiny stands in for it here)
    runs = [argv for argv in commands if argv]
    assert len(runs) == 3 and "--init-from" in runs[-1] and "model.rc_average=false" in runs[1]
    for argv in runs:  # each with its default config; 2 steps on the first 32 bases of each row
        summary = train_dna.run([*argv, "--max-steps", "2", "--seq-len", "32"])
        assert summary["steps"] == 2 and "test_mcc" in json_keys(summary)


def json_keys(summary: dict) -> set[str]:
    """Every key of a summary, nested ones as ``parent_child``."""
    keys = set()
    for k, v in summary.items():
        keys |= {f"{k}_{c}" for c in v} if isinstance(v, dict) else {k}
        keys.add(k)
    return keys
