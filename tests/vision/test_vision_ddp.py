"""Data-parallel train_vit: 2 CPU processes (DDP over gloo) end with the weights of 1 process.

The commands run here are the ones docs/scaling.md shows, word for word: a 1-process run
with batch 8, and 2 processes with batch 4 each, started by Lightning (``--strategy ddp``)
and by torchrun, on the same 16 training images in the same shuffled order
(``EpochShuffle`` draws the order Lightning's ``DistributedSampler`` deals out), for 2
epochs (4 optimiser steps, a reshuffle between the epochs). In float64
the final parameters agree to ~1e-13; the check is 1e-5. (In float32 the same runs differ by
up to ~7e-5 in a handful of weights: summation order changes the gradients' last bits, and
AdamW's division by the gradient's running RMS enlarges that for near-zero gradients.)
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from vision.cli import train_vit

from .helpers import TINY_KWARGS

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "scaling.md"
PREFIX = "python -m vision.cli.train_vit"


def _lines() -> list[str]:
    return [line.strip() for line in DOC.read_text(encoding="utf-8").splitlines()]


def _documented() -> list[list[str]]:
    """The arguments of every ``python -m vision.cli.train_vit ...`` line in docs/scaling.md."""
    return [shlex.split(line, comments=True)[3:] for line in _lines() if line.startswith(PREFIX)]


def _torchrun() -> list[str]:
    """The documented one-machine torchrun command, as arguments of ``torch.distributed.run``."""
    (line,) = [line for line in _lines() if line.startswith("torchrun ") and "--nnodes 1 " in line]
    return shlex.split(line, comments=True)[1:]


def _runs() -> dict[int, list[str]]:
    """The documented training runs (not ``--print-config``), by ``--devices``."""
    runs = {}
    for argv in _documented():
        if "--print-config" not in argv:
            runs[int(argv[argv.index("--devices") + 1])] = argv
    return runs


def _value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_documented_runs_are_the_equivalent_pair():
    """1 process x batch 8 and 2 processes x batch 4, otherwise the same command."""
    runs = _runs()
    assert sorted(runs) == [1, 2]
    one, two = runs[1], runs[2]
    assert _value(one, "--batch-size") == "8" and _value(two, "--batch-size") == "4"
    assert _value(two, "--strategy") == "ddp" and _value(two, "--accelerator") == "cpu"

    def rest(argv: list[str]) -> list[str]:
        skip = {"--devices", "--batch-size", "--strategy", "--out-dir"}
        return [a for i, a in enumerate(argv) if a not in skip and (i == 0 or argv[i - 1] not in skip)]

    assert rest(one) == rest(two)
    torchrun = _torchrun()
    assert torchrun[torchrun.index("-m"):][:2] == ["-m", "vision.cli.train_vit"]
    assert rest(torchrun[torchrun.index("-m") + 2:]) == rest(two) and "--nproc-per-node" in torchrun
    assert torchrun[torchrun.index("--nproc-per-node") + 1] == _value(two, "--devices")
    assert int(_value(one, "--train-size")) % 8 == 0  # no DistributedSampler padding, no dropped images


def test_scaling_flags_reach_the_trainer_section(capsys):
    """Every documented --print-config command runs, and shows its flags under trainer."""
    commands = [argv for argv in _documented() if "--print-config" in argv]
    assert commands
    for argv in commands:
        train_vit.main(argv)
        trainer = yaml.safe_load(capsys.readouterr().out)["trainer"]
        for flag, key in (("--devices", "devices"), ("--strategy", "strategy"), ("--num-nodes", "num_nodes"),
                          ("--accelerator", "accelerator")):
            if flag in argv:
                assert str(trainer[key]) == _value(argv, flag)
        if "--sync-batchnorm" in argv:
            assert trainer["sync_batchnorm"] is True


def _train(argv: list[str], cwd: Path, env: dict[str, str], launcher: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Run ``launcher + argv`` (``python -m vision.cli.train_vit argv`` without a launcher) in
    ``cwd``; the state dict of its last checkpoint."""
    command = [sys.executable, "-m", *launcher] if launcher else [sys.executable, "-m", "vision.cli.train_vit"]
    proc = subprocess.run([*command, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    devices = int(_value(argv, "--devices"))
    if devices > 1:  # really distributed: Lightning names every process, over gloo
        assert f"MEMBER: {devices}/{devices}" in output and "distributed_backend=gloo" in output
    assert (proc.stdout.count("\nsummary\n")) == 1  # printed by the first process only
    checkpoint = torch.load(cwd / _value(argv, "--out-dir") / "checkpoints" / "last.ckpt", map_location="cpu",
                            weights_only=False)
    assert checkpoint["global_step"] == 4  # 2 epochs of 2 steps: the final weights
    return checkpoint["state_dict"]


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="needs torch.distributed with gloo")
def test_two_processes_equal_one_process(tmp_path):
    env = {**os.environ, "LONGSEQ_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("OMP_NUM_THREADS", None)  # Lightning shares the cores out among the processes
    runs = _runs()
    # The 1-process run first: it also writes the image cache the others then read.
    one = _train(runs[1], tmp_path, env)
    assert all(v.dtype == torch.float64 for v in one.values() if v.is_floating_point())
    torchrun = _torchrun()
    script = torchrun.index("-m")
    for other in (_train(runs[2], tmp_path, env),
                  _train(torchrun[script + 2:], tmp_path, env, ("torch.distributed.run", *torchrun[:script + 2]))):
        assert other.keys() == one.keys()
        diffs = {k: (one[k].double() - other[k].double()).abs().max().item() for k in one if one[k].numel()}
        assert max(diffs.values()) <= 1e-5, sorted(diffs.items(), key=lambda kv: -kv[1])[:5]


def test_time_budget_schedule_follows_the_first_process():
    """With a time budget on several processes, the annealing reads the first process's clock
    (a broadcast), so every replica steps with the same learning rate."""
    import timm

    from vision.tasks.classification import ImageClassificationTask

    class Clock:  # Lightning's Timer, as the schedule reads it: 90 s spent, 10 s left
        def time_elapsed(self):
            return 90.0

        def time_remaining(self):
            return 10.0

    sent = []

    class Strategy:
        def broadcast(self, obj, src=0):
            sent.append((obj, src))
            return 0.25  # what the first process read

    backbone = timm.create_model("longseq_vit_tiny", num_classes=3, **TINY_KWARGS["longseq_vit_tiny"])
    task = ImageClassificationTask(backbone, num_classes=3)
    for world_size, expected in ((1, 0.9), (2, 0.25)):
        task._trainer = SimpleNamespace(world_size=world_size, callbacks=[Clock()], strategy=Strategy())
        assert task._time_fraction() == pytest.approx(expected)
    assert sent == [(pytest.approx(0.9), 0)]
    task._trainer = SimpleNamespace(world_size=2, callbacks=[], strategy=Strategy())  # no budget: no broadcast
    assert task._time_fraction() == 0.0 and len(sent) == 1
