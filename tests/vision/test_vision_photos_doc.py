"""Every command and snippet of docs/vision.md's "Your own photos" section, run: in a
stand-in home folder holding generated photos and a timm checkpoint where the section
says they are (``~/photos``, ``~/weights/``, the Hugging Face cache), each training
command for one or two steps."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
import timm
import torch

from vision.cli import train_vit

from .photo_data import make_photo_folder, save_checkpoint, timm_model

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "vision.md"
HEADING = "### Your own photos"
#: Stand-in for the placeholder folder of the image-folder example.
PLACEHOLDER = "/path/to/images"
HUB = ".cache/huggingface/hub/models--timm--vit_small_patch16_224.augreg_in21k_ft_in1k/snapshots/0123abcd"


def _section() -> str:
    text = DOC.read_text()
    start = text.index(HEADING)
    return text[start:text.index("\n## ", start)]


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", _section(), flags=re.S)


def _commands() -> list[list[str]]:
    lines = [line.strip() for block in _blocks("bash") for line in block.splitlines()]
    return [shlex.split(line, comments=True)[2:] for line in lines if line.startswith("python scripts/train_vit.py")]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A home folder laid out as the section assumes."""
    home = tmp_path_factory.mktemp("home")
    make_photo_folder(home / "photos", per_class=5)
    shutil.copytree(home / "photos", home / "more_photos")
    weights = save_checkpoint(timm_model("vit_small_patch16_224"),
                              home / "weights" / "vit_small_patch16_224.safetensors")
    (home / HUB).mkdir(parents=True)
    shutil.copy(weights, home / HUB / "model.safetensors")
    return home


def test_the_section_documents_its_commands():
    commands = _commands()
    assert len(commands) == 6 and len(_blocks("python")) == 1
    flags = {token for argv in commands for token in argv if token.startswith("--")}
    assert {"--data", "--pretrained", "--ckpt-path", "--init-from", "--layer-decay", "--print-config"} <= flags


def _groups() -> list[list[int]]:
    """The commands' indices in runs that can go apart (and in parallel): the first training
    command with those that resume it or start from its checkpoint, every other one alone."""
    commands = _commands()
    later = [i for i, argv in enumerate(commands) if "--ckpt-path" in argv or "--init-from" in argv]
    first = next(i for i, argv in enumerate(commands) if "--print-config" not in argv and i not in later)
    chain = [first, *later]
    return [chain] + [[i] for i in range(len(commands)) if i not in chain]


def _run_folder(argv: list[str]) -> str:
    """The run folder a training command writes (the section's default: train_vit_photos)."""
    return Path(argv[argv.index("--out-dir") + 1]).name if "--out-dir" in argv else "train_vit_photos"


@pytest.mark.parametrize("group", _groups(), ids=lambda group: "-".join(map(str, group)))
def test_documented_commands_run(group, home, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home)
    commands = _commands()
    for i in group:
        argv = [str(home / "photos") if token == PLACEHOLDER else token for token in commands[i]]
        if "--print-config" in argv:
            train_vit.main(argv)
            assert "model:" in capsys.readouterr().out
            continue
        steps = 2 if "--ckpt-path" in argv else 1  # a resumed run goes one step further
        train_vit.main([*argv, "--max-steps", str(steps)])
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["steps"] == steps, argv
        assert Path(summary["last_checkpoint"]).is_file()
        if "--config" not in argv:  # each photo run in the folder the section names
            expected = home / "runs" / _run_folder(argv) / "checkpoints" / "last.ckpt"
            assert Path(summary["last_checkpoint"]).resolve() == expected.resolve(), argv
        if i == group[0] and len(group) > 1:
            _check_pretrained_run(summary, home / "weights" / "vit_small_patch16_224.safetensors")
        elif "--ckpt-path" in argv:  # resumed where it stopped; the history keeps the first validation
            assert summary["epochs"] == 2.0 and summary["best_epoch"] in (1.0, 2.0)
        elif "--init-from" in argv:  # those weights, a fresh optimizer and schedule, no timm file
            assert summary["pretrained"] is None


def _check_pretrained_run(s: dict, weights: Path) -> None:
    """One step from timm weights with the default config: the summary's figures, and a
    checkpoint that rebuilds alone with the architecture the weights implied."""
    from vision.tasks.classification import ImageClassificationTask

    assert s["backbone"] == "longseq_vit_small" and s["img_size"] == 224
    assert Path(s["pretrained"]).expanduser().resolve() == weights.resolve()
    reference = timm.create_model("vit_small_patch16_224", num_classes=2)
    assert s["params"] == sum(p.numel() for p in reference.parameters())  # the trained model, head included
    assert s["epochs"] == 1.0  # 8 training images: one batch of 32
    assert 0.0 <= s["val_top1"] <= 1.0 and 0.0 <= s["val_top1_macro"] <= 1.0 and "val_top5" not in s  # 2 classes
    assert s["best_epoch"] == 1.0 and s["best_step"] == 1 and s["best_val_top1"] == s["val_top1"]
    assert s["train_minutes"] > 0 and s["val_minutes"] > 0 and Path(s["best_checkpoint"]).is_file()
    task = ImageClassificationTask.load_from_checkpoint(s["last_checkpoint"], map_location="cpu")
    kwargs = task.hparams.backbone_kwargs
    assert kwargs["class_token"] and kwargs["pos_embed"] == "learn" and kwargs["img_size"] == 224
    torch.testing.assert_close(task.backbone.pos_embed, timm_model("vit_small_patch16_224").pos_embed,
                               atol=1e-2, rtol=0)


def test_the_runs_go_where_the_section_says():
    groups = _groups()
    assert len(groups[0]) == 3 and sorted(i for g in groups for i in g) == list(range(len(_commands())))
    assert {_run_folder(_commands()[i]) for i in groups[0]} == {"train_vit_photos", "more_photos"}


def test_documented_python_loads_from_the_hub_cache(home, monkeypatch):
    monkeypatch.setenv("HOME", str(home))
    (code,) = _blocks("python")
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    model = namespace["model"].eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 5)
    reference = timm_model("vit_small_patch16_224")
    torch.testing.assert_close(model.cls_token, reference.cls_token)
