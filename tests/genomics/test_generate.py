"""longseq-generate-dna (genomics.cli.generate_dna) on a 2-step causal LM: greedy output equals
decoding by full recompute, FASTA output, seeds, prompt regions and strands, errors, and the
documented commands."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from genomics.cli import generate_dna
from genomics.cli.generate_dna import parse_region
from genomics.data.tokenizers import NucleotideTokenizer
from genomics.models import load_model

from .dna_data import random_dna, write_fasta
from .tiny_runs import train_tiny

REPO = Path(__file__).resolve().parents[2]
PROMPT = random_dna(50, 7)


@pytest.fixture(scope="module")
def lm(tmp_path_factory) -> tuple[Path, str]:
    """(root, checkpoint) of a 2-step causal LM (window 32) under ``root/runs/dna/lm``."""
    root = tmp_path_factory.mktemp("generate")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LONGSEQ_CACHE_DIR", str(root / "cache"))
        summary = train_tiny("lm", root)
    write_fasta(root / "prompt.fa", {"chrA": random_dna(200, 3), "chrB": random_dna(120, 4)})
    return root, summary["checkpoint"]


def _read_fasta(path: Path) -> tuple[str, str]:
    lines = path.read_text().splitlines()
    assert lines[0].startswith(">") and all(not line.startswith(">") for line in lines[1:])
    assert all(len(line) <= 80 for line in lines[1:]) and all(len(line) == 80 for line in lines[1:-1])
    seq = "".join(lines[1:])
    assert re.fullmatch(r"[ACGT]*", seq)
    return lines[0], seq


def _greedy_by_recompute(ckpt: str, prompt: str, n: int) -> str:
    """Greedy continuation over A, C, G, T, running the whole sequence through the model per base."""
    model, tok, _ = load_model(ckpt)
    base_ids = torch.as_tensor(tok.encode("ACGT").astype(np.int64))
    ids = torch.as_tensor(tok.encode(prompt).astype(np.int64))[None]
    with torch.no_grad():
        for _ in range(n):
            nxt = base_ids[model(ids)[0, -1, base_ids].argmax()]
            ids = torch.cat([ids, nxt.view(1, 1)], 1)
    return tok.decode(ids[0, -n:].numpy().astype(np.uint8))


def test_greedy_generation_equals_full_recompute(lm, tmp_path):
    root, ckpt = lm
    out = generate_dna.run(["--ckpt", ckpt, "--prompt", PROMPT, "--length", "300", "--temperature", "0",
                            "--out", str(tmp_path / "g.fa")])
    assert out["sequence"] == _greedy_by_recompute(ckpt, PROMPT, 300)  # 350 bases: past the window of 32
    assert out["bases_per_second"] > 0 and out["prompt_length"] == 50
    header, seq = _read_fasta(tmp_path / "g.fa")
    assert seq == out["sequence"] and len(seq) == 300
    assert header.startswith(">generated length=300 prompt=50bp(+) temperature=0.0")
    top1 = generate_dna.run(["--ckpt", ckpt, "--prompt", PROMPT, "--length", "300", "--top-k", "1",
                             "--prefill-chunk", "7", "--out", str(tmp_path / "k1.fa")])
    assert top1["sequence"] == out["sequence"]  # top-k 1 is greedy too; chunked prompt reading changes nothing


def test_same_seed_same_output_and_include_prompt(lm, tmp_path, capsys):
    _, ckpt = lm
    common = ["--ckpt", ckpt, "--prompt", PROMPT, "--length", "120", "--temperature", "1.5", "--top-k", "3"]
    a = generate_dna.run([*common, "--seed", "5", "--out", str(tmp_path / "a.fa")])
    b = generate_dna.run([*common, "--seed", "5", "--out", str(tmp_path / "b.fa")])
    c = generate_dna.run([*common, "--seed", "6", "--out", str(tmp_path / "c.fa"), "--include-prompt"])
    assert a["sequence"] == b["sequence"] != c["sequence"]
    assert (tmp_path / "a.fa").read_text() == (tmp_path / "b.fa").read_text()
    header, with_prompt = _read_fasta(tmp_path / "c.fa")
    assert with_prompt == PROMPT + c["sequence"]
    assert header.startswith(">generated length=170 prompt=50bp(+) ")  # length= counts the bases written
    assert header.endswith(" with_prompt prompt_length=50 generated_length=120")
    printed = capsys.readouterr().out
    assert "bases/s" in printed and "wrote" in printed


def test_prompt_fasta_regions_and_minus_strand(lm, tmp_path):
    root, ckpt = lm
    fasta = root / "prompt.fa"
    plus = generate_dna.run(["--ckpt", ckpt, "--prompt-fasta", f"{fasta}:chrB:11-60", "--length", "20",
                             "--temperature", "0", "--out", str(tmp_path / "p.fa"), "--include-prompt"])
    region = random_dna(120, 4)[10:60]
    assert plus["prompt_length"] == 50
    assert _read_fasta(tmp_path / "p.fa")[1].startswith(region)
    minus = generate_dna.run(["--ckpt", ckpt, "--prompt-fasta", f"{fasta}:chrB:11-60", "--prompt-strand", "-",
                              "--length", "20", "--temperature", "0", "--out", str(tmp_path / "m.fa"),
                              "--include-prompt"])
    tok = NucleotideTokenizer()
    rc = tok.decode(tok.reverse_complement(tok.encode(region)))
    header, seq = _read_fasta(tmp_path / "m.fa")
    assert seq.startswith(rc) and "prompt=chrB:11-60(-)" in header
    assert minus["sequence"] == _greedy_by_recompute(ckpt, rc, 20)
    whole = generate_dna.run(["--ckpt", ckpt, "--prompt-fasta", str(fasta), "--length", "5",
                              "--out", str(tmp_path / "w.fa")])
    assert whole["prompt_length"] == 200  # the first record, whole
    assert parse_region("x.fa:chr1:1,001-2,000") == ("x.fa", "chr1", (1001, 2000))


def test_prompt_from_a_shipped_genome(lm, tmp_path):
    _, ckpt = lm
    from genomics.io.readers import iter_records
    from genomics.io.sources import ecoli_k12_fasta, yeast_genbank

    ecoli = generate_dna.run(["--ckpt", ckpt, "--prompt-fasta", "ecoli:NC_007779.1:101-180", "--length", "5",
                              "--out", str(tmp_path / "e.fa"), "--include-prompt"])
    first = next(iter(iter_records(str(ecoli_k12_fasta()))))
    assert ecoli["prompt_length"] == 80 and _read_fasta(tmp_path / "e.fa")[1].startswith(str(first.seq[100:180]))
    yeast = generate_dna.run(["--ckpt", ckpt, "--prompt-fasta", "yeast:chr04:1-60", "--length", "5",
                              "--out", str(tmp_path / "y.fa"), "--include-prompt"])
    chr04 = next(iter(iter_records(yeast_genbank("chr04"))))
    assert yeast["prompt_length"] == 60 and _read_fasta(tmp_path / "y.fa")[1].startswith(str(chr04.seq[:60]))
    with pytest.raises(SystemExit, match="--prompt-fasta yeast:chr99: chromosome must be one of"):
        generate_dna.run(["--ckpt", ckpt, "--prompt-fasta", "yeast:chr99", "--out", str(tmp_path / "x.fa")])


@pytest.mark.parametrize("extra, flag", [
    (["--length", "0"], "--length"),
    (["--temperature", "-1"], "--temperature"),
    (["--top-k", "5"], "--top-k"),
    (["--prefill-chunk", "0"], "--prefill-chunk"),
])
def test_bad_numbers_name_the_flag(lm, tmp_path, extra, flag):
    _, ckpt = lm
    with pytest.raises(SystemExit, match=re.escape(flag)):
        generate_dna.run(["--ckpt", ckpt, "--prompt", "ACGT", "--out", str(tmp_path / "x.fa"), *extra])


def test_bad_inputs_name_the_flag(lm, tmp_path):
    root, ckpt = lm
    out = ["--out", str(tmp_path / "x.fa")]
    with pytest.raises(SystemExit, match="--prompt: .*invalid nucleotide 'X'"):
        generate_dna.run(["--ckpt", ckpt, "--prompt", "ACGX", *out])
    with pytest.raises(SystemExit, match="--prompt-fasta .*no record named 'chrZ'"):
        generate_dna.run(["--ckpt", ckpt, "--prompt-fasta", f"{root / 'prompt.fa'}:chrZ", *out])
    with pytest.raises(SystemExit, match="--prompt-fasta .*past the record's 120 bases"):
        generate_dna.run(["--ckpt", ckpt, "--prompt-fasta", f"{root / 'prompt.fa'}:chrB:100-200", *out])
    with pytest.raises(SystemExit, match="--prompt-fasta .*no such file"):
        generate_dna.run(["--ckpt", ckpt, "--prompt-fasta", str(tmp_path / "none.fa"), *out])
    with pytest.raises(SystemExit, match="--ckpt .*no such checkpoint"):
        generate_dna.run(["--ckpt", str(tmp_path / "none.ckpt"), "--prompt", "ACGT", *out])


def test_documented_generate_commands_run(lm):
    """Every ``scripts/generate_dna.py`` command in docs/genomics.md and in the command's
    docstring runs from the run root."""
    root, _ = lm
    text = (REPO / "docs" / "genomics.md").read_text() + "\n" + generate_dna.__doc__
    commands = re.findall(r"^\s*python scripts/generate_dna\.py .*$", text, re.M)
    assert len(commands) == 5
    for command in commands:
        argv = shlex.split(command.strip())[2:]
        proc = subprocess.run([sys.executable, str(REPO / "scripts" / "generate_dna.py"), *argv], cwd=root,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (command, proc.stderr[-2000:])
        assert "bases/s" in proc.stdout
