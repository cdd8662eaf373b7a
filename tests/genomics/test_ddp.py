"""Data-parallel train_dna: 2 CPU processes (DDP over gloo) end with the weights of 1 process.

The commands run here are the ones docs/scaling.md shows in its train_dna section, word for
word: 1 process with batch 4 and 2 processes with batch 2 each (Lightning's ``--strategy ddp``
starting the command again for the second), 3 optimiser steps of a tiny causal LM on 128-base
windows of the default genome, in float64. The training order is
:class:`~longseq.training.sampling.ShardedResumableSampler`: each process takes every second
draw of the order the 1-process run trains, so both runs train the same windows (with the
same reverse-complement draws) at every step.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from genomics.cli import train_dna
from longseq.training.sampling import ResumableSampler, ShardedResumableSampler

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "scaling.md"
PREFIX = "python -m genomics.cli.train_dna"


def _documented() -> list[list[str]]:
    """The arguments of every ``python -m genomics.cli.train_dna ...`` line in docs/scaling.md."""
    lines = [line.strip() for line in DOC.read_text(encoding="utf-8").splitlines()]
    return [shlex.split(line, comments=True)[3:] for line in lines if line.startswith(PREFIX)]


def _value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def _runs() -> dict[int, list[str]]:
    return {int(_value(a, "--devices")): a for a in _documented() if "--print-config" not in a}


@pytest.mark.parametrize("replacement", [True, False])
def test_sharded_order_deals_out_the_one_process_order(replacement):
    """W processes x batch B take, at every step, the items of 1 process x batch W * B."""
    size, batch, steps, world = 13, 3, 4, 2
    one = list(ResumableSampler(size, batch * world * steps, replacement=replacement, seed=5, epoch=2))
    shards = [list(ShardedResumableSampler(size, batch * steps, replacement=replacement, seed=5, epoch=2, rank=r,
                                           world_size=world)) for r in range(world)]
    for step in range(steps):
        together = sorted(item for shard in shards for item in shard[step * batch:(step + 1) * batch])
        assert together == sorted(one[step * batch * world:(step + 1) * batch * world])
    assert isinstance(ShardedResumableSampler(size, world_size=world), torch.utils.data.DistributedSampler)
    assert len(ShardedResumableSampler(size, world_size=world)) == 7  # one pass between them, ceil(13 / 2)


def test_sharded_order_resumes_mid_epoch():
    """A process resumed after k of its items continues with its (k+1)-th."""
    full = list(ShardedResumableSampler(20, 6, seed=1, rank=1, world_size=2))
    resumed = list(ShardedResumableSampler(20, 6, seed=1, rank=1, world_size=2, position=lambda: (0, 4)))
    assert resumed == full[4:]


def test_documented_runs_are_the_equivalent_pair():
    runs = _runs()
    assert sorted(runs) == [1, 2]
    one, two = runs[1], runs[2]
    assert _value(one, "--batch-size") == "4" and _value(two, "--batch-size") == "2"
    assert _value(two, "--strategy") == "ddp" and _value(two, "--precision") == "64-true"

    def rest(argv: list[str]) -> list[str]:
        skip = {"--devices", "--batch-size", "--strategy", "--out-dir"}
        return [a for i, a in enumerate(argv) if a not in skip and (i == 0 or argv[i - 1] not in skip)]

    assert rest(one) == rest(two)


def test_scaling_flags_reach_the_trainer_section(capsys):
    commands = [argv for argv in _documented() if "--print-config" in argv]
    assert commands
    for argv in commands:
        train_dna.run(argv)
        trainer = yaml.safe_load(capsys.readouterr().out.split("\n", 1)[1])["trainer"]
        for flag, key in (("--devices", "devices"), ("--strategy", "strategy"), ("--num-nodes", "num_nodes"),
                          ("--accelerator", "accelerator")):
            if flag in argv:
                assert str(trainer[key]) == _value(argv, flag)


def _train(argv: list[str], cwd: Path, env: dict[str, str]) -> dict[str, torch.Tensor]:
    proc = subprocess.run([sys.executable, "-m", "genomics.cli.train_dna", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=240)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    devices = int(_value(argv, "--devices"))
    if devices > 1:  # really distributed: Lightning names every process, over gloo
        assert f"MEMBER: {devices}/{devices}" in output and "distributed_backend=gloo" in output
    assert proc.stdout.count("== train_dna summary ==") == 1  # printed by the first process only
    path = cwd / _value(argv, "--out-dir") / "lm" / "version_0" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == int(_value(argv, "--max-steps"))
    return checkpoint["state_dict"]


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="needs torch.distributed with gloo")
def test_two_processes_equal_one_process(tmp_path):
    env = {**os.environ, "LONGSEQ_CACHE_DIR": str(tmp_path / "cache"), "PYTHONHASHSEED": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("OMP_NUM_THREADS", None)  # Lightning shares the cores out among the processes it starts
    runs = _runs()
    one = _train(runs[1], tmp_path, env)
    two = _train(runs[2], tmp_path, env)
    assert one.keys() == two.keys()
    for name in one:
        assert one[name].dtype == torch.float64
        assert torch.allclose(one[name], two[name], rtol=0, atol=1e-5), name
