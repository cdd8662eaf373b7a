"""One DNA window split over 2 processes (gloo, CPU) trains as the whole window on one.

:func:`genomics.models.sequence_parallel.shard_encoder` makes the language model's attention
layers call ``longseq.distributed.attend_sharded``; each process holds a contiguous slice of
the window (:func:`~genomics.models.sequence_parallel.slice_bounds`, unequal lengths here), its
loss is the sum over its slice's next-base targets divided by the window's target count, and
the gradients are summed over the processes. After 2 AdamW steps in float64 the parameters
equal those of the 1-process run within 1e-5, as do the slice logits before the first step
(plain, with head chunks and grouped-query heads, and with a k-mer convolution whose context
rows come from the neighbouring slice).
Then the same through ``longseq-train-dna --sequence-parallel 2``: the two commands of
docs/distributed.md, run as written, end with the same parameters within 1e-5.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from genomics.models import DNALanguageModel
from genomics.models.sequence_parallel import check_shardable, encoder_of, shard_encoder, slice_bounds

WORLD = 2
LENGTH = 203  # slices of 102 and 101 bases: not multiples of the kernel block
WINDOW = 24
MODEL = dict(vocab_size=9, dim=16, depth=2, heads=2, window=WINDOW, objective="causal")


def _model(**extra) -> DNALanguageModel:
    torch.manual_seed(0)
    return DNALanguageModel(**{**MODEL, **extra}).double()


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 4, (2, LENGTH), generator=g)
    targets = F.pad(ids[:, 1:], (0, 1), value=-100)  # logits at i predict base i + 1
    return ids, targets


def _train(model: DNALanguageModel, ids: torch.Tensor, targets: torch.Tensor, total: int, steps: int,
           reduce: bool) -> torch.Tensor:
    """``steps`` AdamW steps; the logits before the first."""
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    first = None
    for _ in range(steps):
        logits = model(ids)
        first = logits.detach() if first is None else first
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100,
                               reduction="sum") / total
        opt.zero_grad()
        loss.backward()
        if reduce:
            for p in model.parameters():
                dist.all_reduce(p.grad)
        opt.step()
    return first


def _worker(rank: int, init: str, out: str, extra: dict) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        ids, targets = _batch()
        total = int((targets != -100).sum())
        start, stop = slice_bounds(LENGTH, rank, WORLD)
        model = _model(**extra)
        shard_encoder(_encoder(model))
        logits = _train(model, ids[:, start:stop], targets[:, start:stop], total, 2, reduce=True)
        torch.save({"logits": logits, "state": model.state_dict()}, f"{out}.{rank}")
        dist.barrier()  # no send in flight when gloo tears its pairs down (an abort otherwise, rarely)
    finally:
        dist.destroy_process_group()


def _encoder(model: DNALanguageModel):
    return encoder_of(model)


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo")
@pytest.mark.parametrize("extra", [{}, {"heads": 4, "kv_heads": 2, "head_chunks": 2}, {"kmer_kernel": 5}],
                         ids=["plain", "head-chunks-gqa", "kmer-halo"])
def test_two_slices_train_as_one_window(tmp_path, extra):
    ids, targets = _batch()
    total = int((targets != -100).sum())
    reference = _model(**extra)
    logits = _train(reference, ids, targets, total, 2, reduce=False)
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.start_processes(_worker, args=(init, str(tmp_path / "out"), extra), nprocs=WORLD, start_method="spawn")
    parts = [torch.load(f"{tmp_path / 'out'}.{r}", weights_only=True) for r in range(WORLD)]
    assert torch.allclose(torch.cat([p["logits"] for p in parts], 1), logits, rtol=0, atol=1e-9)
    want = reference.state_dict()
    for part in parts:
        for name, value in want.items():
            assert torch.allclose(part["state"][name], value, rtol=0, atol=1e-5), name


def test_slice_bounds_cover_the_window():
    bounds = [slice_bounds(203, r, 3) for r in range(3)]
    assert bounds == [(0, 68), (68, 136), (136, 203)]
    with pytest.raises(ValueError, match="cannot be split"):
        slice_bounds(2, 0, 3)


@pytest.mark.parametrize("extra, key", [({"global_tokens": 2}, "global_tokens"), ({"lsh_layers": [1]}, "layer 1"),
                                        ({"dropout": 0.1}, "dropout")])
def test_unsplittable_models_are_refused(extra, key):
    with pytest.raises(ValueError, match=key):
        check_shardable(_encoder(_model(**extra)))


# --- longseq-train-dna --sequence-parallel: the commands of docs/distributed.md, as written

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "python -m genomics.cli.train_dna"


def _documented() -> dict[int, list[str]]:
    """The ``train_dna`` commands of docs/distributed.md, by ``--devices``."""
    lines = [line.strip() for line in (ROOT / "docs" / "distributed.md").read_text(encoding="utf-8").splitlines()]
    runs = [shlex.split(line, comments=True)[3:] for line in lines if line.startswith(PREFIX)]
    return {int(argv[argv.index("--devices") + 1]): argv for argv in runs}


def _value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[dict[str, torch.Tensor], dict]:
    proc = subprocess.run([sys.executable, "-m", "genomics.cli.train_dna", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=240)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert proc.stdout.count("== train_dna summary ==") == 1
    run = cwd / _value(argv, "--out-dir") / "lm" / "version_0"
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == int(_value(argv, "--max-steps"))
    return checkpoint["state_dict"], json.loads((run / "summary.json").read_text())


def test_documented_commands_are_the_equivalent_pair():
    runs = _documented()
    assert sorted(runs) == [1, 2]
    two = runs[2]
    assert _value(two, "--sequence-parallel") == "2" and _value(two, "--strategy") == "ddp"
    skip = {"--devices", "--strategy", "--sequence-parallel", "--out-dir"}
    rest = [[a for i, a in enumerate(argv) if a not in skip and (i == 0 or argv[i - 1] not in skip)]
            for argv in (runs[1], two)]
    assert rest[0] == rest[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo")
def test_sequence_parallel_run_equals_one_process(tmp_path):
    env = {**os.environ, "LONGSEQ_CACHE_DIR": str(tmp_path / "cache"), "PYTHONHASHSEED": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("OMP_NUM_THREADS", None)
    runs = _documented()
    one, one_summary = _run(runs[1], tmp_path, env)
    two, two_summary = _run(runs[2], tmp_path, env)
    assert two_summary["max_seq_len_trained"] == int(_value(runs[2], "--seq-len")) // 2  # a slice per process
    for name in one:
        assert one[name].dtype == torch.float64
        assert torch.allclose(one[name], two[name], rtol=0, atol=1e-5), name
    assert abs(one_summary["best_val_bpb"] - two_summary["best_val_bpb"]) < 1e-6


@pytest.mark.parametrize("argv, message", [
    (["--task", "annotation", "--sequence-parallel", "2"], "--sequence-parallel: not used by --task annotation"),
])
def test_sequence_parallel_flag_errors(argv, message, capsys):
    from genomics.cli import train_dna

    with pytest.raises(SystemExit) as exc:
        train_dna.main([*argv, "--print-config"])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_sequence_parallel_refuses_an_lsh_layer(tmp_path, monkeypatch, capsys):
    """A model with a layer that has no sharded form stops before training, naming it."""
    import yaml

    from genomics.cli import train_dna

    from .dna_data import random_dna, write_fasta

    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    cfg = yaml.safe_load((ROOT / "configs" / "genomics" / "ddp_check.yaml").read_text())
    cfg["model"]["lsh_layers"] = [0]
    config = tmp_path / "lsh.yaml"
    config.write_text(yaml.safe_dump(cfg))
    fasta = write_fasta(tmp_path / "g.fa", {"chr": random_dna(2000, 3)})
    with pytest.raises(SystemExit) as exc:
        train_dna.main(["--config", str(config), "--fasta", str(fasta), "--seq-len", "128", "--no-warmup",
                        "--max-steps", "1", "--sequence-parallel", "2", "--out-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "layer 0" in err, err
    assert not (tmp_path / "runs" / "lm").exists()  # refused before the run folder is written
