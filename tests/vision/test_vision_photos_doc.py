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


def test_documented_commands_run(home, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home)
    for argv in _commands():
        argv = [str(home / "photos") if token == PLACEHOLDER else token for token in argv]
        if "--print-config" in argv:
            train_vit.main(argv)
            assert "model:" in capsys.readouterr().out
            continue
        steps = 2 if "--ckpt-path" in argv else 1  # a resumed run goes one step further
        train_vit.main([*argv, "--max-steps", str(steps)])
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["steps"] == steps, argv
        assert Path(summary["last_checkpoint"]).is_file()
    for run in ("train_vit_photos", "photos_384", "more_photos"):  # each run in the folder the section names
        assert (home / "runs" / run / "checkpoints" / "last.ckpt").is_file()


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
