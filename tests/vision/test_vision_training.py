"""Classification training end to end on tiny settings: Lightning module, script, configs, reload."""

from __future__ import annotations

import inspect
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from ..scripts import load_script
from .helpers import TINY_KWARGS
from vision.data.datamodules import ScatteredDigitsDataModule
from vision.tasks.classification import ImageClassifier

ROOT = Path(__file__).resolve().parents[2]


def _load_script():
    return load_script("train_vit")


@pytest.fixture(scope="module")
def script():
    return _load_script()


@pytest.mark.parametrize("name", ["longseq_vit_tiny", "longseq_swin_tiny"])
def test_train_script_two_steps_and_reload(script, name, tmp_path):
    summary = script.train(
        backbone=name, img_size=48, max_steps=2, batch_size=4, train_size=8, val_size=6, num_workers=0,
        cache_dir=str(tmp_path / "cache"), out_dir=str(tmp_path / "run"), backbone_kwargs=TINY_KWARGS[name],
        progress_bar=False, warmup_steps=1,
    )
    assert summary["steps"] == 2
    assert 0.0 <= summary["val_top1"] <= 1.0 and summary["val_top1"] <= summary["val_top5"] <= 1.0
    assert summary["train_images_per_s"] > 0 and summary["peak_rss_gb"] > 0
    assert Path(summary["confusion_png"]).is_file() and Path(summary["confusion_png"]).stat().st_size > 1000

    # The last checkpoint holds the final weights: reloading it reproduces the validation accuracy.
    model = ImageClassifier.load_from_checkpoint(summary["last_checkpoint"], map_location="cpu").eval()
    assert model.hparams.backbone_name == name
    dm = ScatteredDigitsDataModule(img_size=48, train_size=8, val_size=6, batch_size=6, num_workers=0,
                                   cache_dir=str(tmp_path / "cache"))
    dm.setup()
    x, y = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc == pytest.approx(summary["val_top1"], abs=1e-6)


def test_module_two_steps_with_explicit_backbone(tmp_path):
    import timm

    backbone = timm.create_model("longseq_vit_digits", num_classes=10, **TINY_KWARGS["longseq_vit_digits"])
    before = [p.detach().clone() for p in backbone.parameters()]
    module = ImageClassifier(backbone, num_classes=10, lr=1e-3, warmup_steps=1, confusion_dir=str(tmp_path / "cm"))
    assert "backbone" not in module.hparams
    dm = ScatteredDigitsDataModule(img_size=(40, 56), train_size=8, val_size=4, batch_size=4, num_workers=0,
                                   cache_dir=str(tmp_path / "cache"))
    trainer = L.Trainer(max_steps=2, limit_val_batches=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, backbone.parameters()))
    trainer.validate(module, datamodule=dm, verbose=False)
    assert module.last_confusion_png is not None and module.last_confusion_png.is_file()


def test_parse_args_flags_override_config(script, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("backbone: longseq_swin_tiny\nimg_size: 256\nbatch_size: 4\n")
    args = script.parse_args(["--config", str(cfg), "--img-size", "128", "--max-steps", "3", "--devices", "1"])
    assert args == {"backbone": "longseq_swin_tiny", "img_size": 128, "batch_size": 4, "max_steps": 3, "devices": 1}
    bad = tmp_path / "bad.yaml"
    bad.write_text("img_sise: 3\n")
    with pytest.raises(ValueError, match="img_sise"):
        script.parse_args(["--config", str(bad)])


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "vision").glob("*.yaml")), ids=lambda p: p.name)
def test_configs_match_train_signature(script, path):
    config = script.load_config(path)
    params = inspect.signature(script.train).parameters
    for key, value in config.items():
        default = params[key].default
        if value is not None and default not in (None, inspect.Parameter.empty):
            assert isinstance(value, type(default)) or (isinstance(default, float) and isinstance(value, int)), key
    raw = yaml.safe_load(path.read_text())
    assert raw == config


def test_default_config_is_the_bare_run(script):
    """configs/vision/train_vit.yaml documents the bare run: its values are train()'s defaults."""
    config = script.load_config(ROOT / "configs" / "vision" / "train_vit.yaml")
    params = inspect.signature(script.train).parameters
    kwargs = config.pop("backbone_kwargs")
    assert kwargs == script.DEFAULT_BACKBONE_KWARGS[params["backbone"].default]
    assert config == {k: params[k].default for k in config}
