"""The one config scheme: sections checked against signatures, errors with file and line."""

from pathlib import Path

import pytest
import yaml

from longseq.training.config import (
    ConfigError, Section, add_config_arguments, apply_overrides, config_file, dump_config, load_config,
    trainer_accepts, validate_config,
)


def model_fn(dim: int = 64, depth: int = 2) -> None: ...


class DataModule:
    def __init__(self, path: str, batch_size: int = 1) -> None: ...


class Flexible:
    def __init__(self, **kwargs) -> None: ...


SECTIONS = [Section("model", (model_fn,)), Section("data", (DataModule,)),
            Section("trainer", trainer_accepts("val_every")), Section("free")]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_valid_config_fills_every_section(tmp_path):
    cfg = load_config(write(tmp_path, "model:\n  dim: 32\ntrainer:\n  max_time: '00:00:05:00'\n"), SECTIONS)
    assert cfg == {"model": {"dim": 32}, "data": {}, "trainer": {"max_time": "00:00:05:00"}, "free": {}}


def test_unknown_key_names_file_line_and_suggestion(tmp_path):
    path = write(tmp_path, "model:\n  dim: 32\n  detph: 3\n")
    with pytest.raises(ConfigError, match=rf"^{path}:3: model.detph: unknown key \(did you mean 'depth'\?\)"):
        load_config(path, SECTIONS)


def test_unknown_section_names_its_line(tmp_path):
    path = write(tmp_path, "model: {}\nmodle:\n  dim: 1\n")
    with pytest.raises(ConfigError, match=rf"^{path}:2: unknown section 'modle' \(did you mean 'model'\?\)"):
        load_config(path, SECTIONS)


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "model:\n  dim: 32\n  depth: [1, 2\n")
    with pytest.raises(ConfigError, match=rf"^{path}:\d+: invalid YAML"):
        load_config(path, SECTIONS)


def test_missing_file_and_non_mapping_are_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml", SECTIONS)
    with pytest.raises(ConfigError, match=r"cfg.yaml:1: a config is a mapping"):
        load_config(write(tmp_path, "- model\n"), SECTIONS)
    with pytest.raises(ConfigError, match=r"cfg.yaml:1: section 'model' must be a mapping"):
        load_config(write(tmp_path, "model: 3\n"), SECTIONS)


def test_any_lightning_trainer_argument_is_accepted(tmp_path):
    import inspect

    import lightning

    names = [n for n in inspect.signature(lightning.Trainer.__init__).parameters if n != "self"]
    cfg = validate_config({"trainer": {n: None for n in names} | {"val_every": 5}}, SECTIONS)
    assert set(cfg["trainer"]) == set(names) | {"val_every"}
    with pytest.raises(ConfigError, match=r"trainer.max_epoch: unknown key \(did you mean 'max_epochs'\?\)"):
        validate_config({"trainer": {"max_epoch": 1}}, SECTIONS)


def test_kwargs_and_free_form_sections_accept_anything():
    sections = [Section("a", (Flexible,)), Section("free")]
    assert validate_config({"a": {"x": 1}, "free": {"y": 2}}, sections) == {"a": {"x": 1}, "free": {"y": 2}}


def test_overrides_skip_flags_not_given_and_dump_round_trips():
    cfg = {"model": {"dim": 32, "depth": 2}, "data": {}}
    merged = apply_overrides(cfg, {"model": {"dim": 64, "depth": None}, "data": {"path": Path("x.fa")}})
    assert merged == {"model": {"dim": 64, "depth": 2}, "data": {"path": Path("x.fa")}}
    assert cfg["model"]["dim"] == 32  # the input is not modified
    assert yaml.safe_load(dump_config(merged)) == {"model": {"dim": 64, "depth": 2}, "data": {"path": "x.fa"}}


def test_config_arguments_and_shipped_configs():
    import argparse

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, default=None)
    args = parser.parse_args(["--config", "a.yaml", "--print-config"])
    assert args.config == Path("a.yaml") and args.print_config
    assert config_file("genomics/tiny.yaml").read_text() == (
        Path(__file__).resolve().parents[2] / "configs" / "genomics" / "tiny.yaml").read_text()
    with pytest.raises(ConfigError, match="no such shipped config"):
        config_file("genomics/none.yaml")
