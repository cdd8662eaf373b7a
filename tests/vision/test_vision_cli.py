"""The vision console commands: installed entry points, thin scripts, documented examples."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vision.cli import bench_vision, train_vit

from .helpers import example_commands

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ["train_vit", "train_detector", "train_yolo_baseline", "compare_detection", "bench_vision"]


def _console(name: str) -> Path:
    """The console script pip installed next to this interpreter."""
    path = Path(sys.executable).with_name(name)
    if not path.is_file():
        pytest.skip(f"{name} is not installed next to {sys.executable} (pip install -e .)")
    return path


@pytest.mark.parametrize("name", COMMANDS)
def test_script_is_a_thin_wrapper_of_its_command(name):
    script = ROOT / "scripts" / f"{name}.py"
    text = script.read_text()
    module = importlib.import_module(f"vision.cli.{name}")
    assert f":mod:`vision.cli.{name}`" in ast.get_docstring(ast.parse(text))  # the usage text lives there, once
    assert f"from vision.cli.{name} import main" in text
    assert "sys.path" not in text and "sys.path" not in Path(module.__file__).read_text()


def test_installed_command_help(tmp_path):
    proc = subprocess.run([str(_console("longseq-train-vit")), "--help"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--print-config" in proc.stdout and "python scripts/train_vit.py --img-size 1024" in proc.stdout


def test_installed_command_finds_its_configs_from_any_folder(tmp_path):
    """Outside the checkout, the default config and documented ``configs/...`` paths still resolve."""
    command = [str(_console("longseq-train-vit")), "--config", "configs/vision/train_vit_1024.yaml",
               "--img-size", "768", "--print-config"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = yaml.safe_load(proc.stdout)
    assert printed["data"]["img_size"] == 768 and printed["model"]["patch_size"] == 64
    assert not any(tmp_path.iterdir())  # nothing written: no data, no run folder


@pytest.mark.parametrize("argv", example_commands(train_vit.__doc__, "train_vit"), ids=" ".join)
def test_documented_train_vit_examples_print_their_config(argv, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(train_vit, "run", lambda cfg: pytest.fail("--print-config went on to train"))
    train_vit.main([*argv, "--print-config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert set(printed) == {"model", "data", "task", "trainer", "checkpoint"}


def test_train_vit_has_documented_examples():
    assert len(example_commands(train_vit.__doc__, "train_vit")) == 5


@pytest.mark.parametrize("argv", example_commands(bench_vision.__doc__, "bench_vision"), ids=" ".join)
def test_documented_bench_examples_parse_and_build(argv):
    args = bench_vision.parser().parse_args(argv)
    assert args.models and all(size > 0 for size in args.sizes)
    for model in args.models:
        assert bench_vision.build(model, 64) is not None
