"""Classification training end to end on tiny settings: the task, the command's config, reload."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from longseq.training.config import ConfigError, read_yaml
from vision.cli import train_vit
from vision.data.datamodules import ScatteredDigitsDataModule
from vision.tasks.classification import ImageClassificationTask, ImageClassifier

from .helpers import TINY_KWARGS

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_YAML = ROOT / "configs" / "vision" / "train_vit.yaml"


def _config(argv: list[str]) -> dict:
    return train_vit.build_config_from_args(train_vit.parser().parse_args(argv))


@pytest.mark.parametrize("name", ["longseq_vit_tiny", "longseq_swin_tiny"])
def test_run_two_steps_and_reload(name, tmp_path):
    cfg = _config(["--backbone", name, "--img-size", "48", "--max-steps", "2", "--batch-size", "4",
                   "--train-size", "8", "--val-size", "6", "--num-workers", "0", "--out-dir", str(tmp_path / "run")])
    cfg["model"] = {"name": name, **TINY_KWARGS[name]}
    cfg["data"]["cache_dir"] = str(tmp_path / "cache")
    cfg["task"]["warmup_steps"] = 1
    cfg["trainer"]["enable_progress_bar"] = False
    summary = train_vit.run(cfg)
    assert summary["steps"] == 2
    assert 0.0 <= summary["val_top1"] <= 1.0 and summary["val_top1"] <= summary["val_top5"] <= 1.0
    assert summary["train_images_per_s"] > 0 and summary["peak_rss_gb"] > 0
    assert Path(summary["confusion_png"]).is_file() and Path(summary["confusion_png"]).stat().st_size > 1000

    # The last checkpoint holds the final weights: reloading it reproduces the validation accuracy.
    model = ImageClassificationTask.load_from_checkpoint(summary["last_checkpoint"], map_location="cpu").eval()
    assert model.hparams.backbone_name == name
    dm = ScatteredDigitsDataModule(img_size=48, train_size=8, val_size=6, batch_size=6, num_workers=0,
                                   cache_dir=str(tmp_path / "cache"))
    dm.setup()
    x, y = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc == pytest.approx(summary["val_top1"], abs=1e-6)


def test_task_two_steps_with_explicit_backbone(tmp_path):
    import timm

    assert ImageClassifier is ImageClassificationTask  # the former name still imports
    backbone = timm.create_model("longseq_vit_digits", num_classes=10, **TINY_KWARGS["longseq_vit_digits"])
    before = [p.detach().clone() for p in backbone.parameters()]
    module = ImageClassificationTask(backbone, num_classes=10, lr=1e-3, warmup_steps=1,
                                     confusion_dir=str(tmp_path / "cm"))
    assert "backbone" not in module.hparams
    dm = ScatteredDigitsDataModule(img_size=(40, 56), train_size=8, val_size=4, batch_size=4, num_workers=0,
                                   cache_dir=str(tmp_path / "cache"))
    trainer = L.Trainer(max_steps=2, limit_val_batches=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, backbone.parameters()))
    trainer.validate(module, datamodule=dm, verbose=False)
    png = module.last_confusion_png
    assert png is not None and png.is_file() and png.stat().st_size > 1000


def test_flags_override_config(tmp_path):
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text("model:\n  name: longseq_swin_tiny\ndata:\n  img_size: 256\n  batch_size: 4\n"
                        "trainer:\n  max_epochs: 2\n")
    cfg = _config(["--config", str(cfg_path), "--img-size", "128", "--max-steps", "3", "--devices", "1"])
    assert cfg["model"] == {"name": "longseq_swin_tiny"}  # another model: the default's kwargs are left out
    assert cfg["data"]["img_size"] == 128 and cfg["data"]["batch_size"] == 4
    assert cfg["trainer"]["max_steps"] == 3 and cfg["trainer"]["devices"] == 1 and cfg["trainer"]["max_epochs"] == 2
    assert cfg["trainer"]["max_time"] == {"minutes": 26.0}  # the command's default, kept
    assert _config(["--max-minutes", "0"])["trainer"]["max_time"] is None
    assert _config(["--max-minutes", "5"])["trainer"]["max_time"] == {"minutes": 5.0}


def test_backbone_flag_starts_the_model_section_afresh():
    assert _config([])["model"] == {"name": "longseq_vit_digits", **train_vit.DEFAULT_BACKBONE_KWARGS["longseq_vit_digits"]}
    assert _config(["--backbone", "longseq_swin_tiny"])["model"] == {"name": "longseq_swin_tiny"}
    assert _config(["--backbone", "longseq_vit_digits"])["model"]["patch_size"] == 32


def test_image_folder_drops_the_digits_settings(tmp_path):
    cfg = _config(["--data", str(tmp_path)])
    assert cfg["data"]["root"] == str(tmp_path)
    assert not {"train_size", "val_size", "cache_dir"} & set(cfg["data"])


@pytest.mark.parametrize(("text", "line", "match"), [
    ("data:\n  img_size: 64\n  img_sise: 3\n", 3, "data.img_sise: unknown key.*did you mean 'img_size'"),
    ("model:\n  name: longseq_swin_tiny\n  embed_kwargs: {first_stride: 4}\n", 3, "model.embed_kwargs: unknown key"),
    ("model:\n  name: longseq_vit_tinny\n", 2, "unknown timm model 'longseq_vit_tinny'.*'longseq_vit_tiny'"),
    ("task:\n  num_classes: 3\n", 2, "task.num_classes: unknown key"),
    ("trainer:\n  max_epoch: 3\n", 2, "trainer.max_epoch: unknown key.*did you mean 'max_epochs'"),
    ("optimizer:\n  lr: 3\n", 1, "unknown section 'optimizer'"),
    ("img_size: 3\n", 1, "unknown section 'img_size'"),
])
def test_config_errors_name_file_and_line(tmp_path, text, line, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        _config(["--config", str(path)])
    assert str(info.value).startswith(f"{path}:{line}:")


def test_config_error_exits_2_with_the_message(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("trainer:\n  max_epoch: 3\n")
    with pytest.raises(SystemExit) as info:
        train_vit.main(["--config", str(path), "--print-config"])
    assert info.value.code == 2 and f"{path}:2: trainer.max_epoch" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "vision").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = _config(["--config", str(path)])
    raw, _ = read_yaml(path)
    for section, values in raw.items():
        for key, value in values.items():
            assert cfg[section][key] == value, f"{section}.{key}"


def test_default_config_is_the_bare_run():
    """configs/vision/train_vit.yaml restates the command's defaults, every key."""
    raw, _ = read_yaml(DEFAULT_YAML)
    assert raw == train_vit.DEFAULTS
    assert Path(train_vit.parser().get_default("config")).resolve() == DEFAULT_YAML.resolve()


def test_print_config_with_flag_exits_before_data_work(monkeypatch, capsys, tmp_path):
    def no_data(*args, **kwargs):
        raise AssertionError("data work before --print-config returned")

    monkeypatch.setattr(train_vit, "run", no_data)
    monkeypatch.setattr(train_vit, "_datamodule", no_data)
    monkeypatch.setattr(ScatteredDigitsDataModule, "prepare_data", no_data)
    train_vit.main(["--print-config", "--img-size", "1024"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["img_size"] == 1024
    assert printed["model"]["name"] == "longseq_vit_digits"

    # The printed config is a config: read back, it prints the same.
    saved = tmp_path / "saved.yaml"
    saved.write_text(yaml.safe_dump(printed, sort_keys=False))
    train_vit.main(["--config", str(saved), "--print-config"])
    assert yaml.safe_load(capsys.readouterr().out) == printed
