"""What the vision commands share: a run's config from defaults, YAML and flags; console output.

A run's config is built in three layers, each overriding the one before: the command's
own defaults (``DEFAULTS`` in its module), the YAML given with ``--config`` (a shipped one
by default), and the flags given. The ``model`` section describes one model: a layer
that names a different ``model.name`` starts that section afresh from the new model's
defaults, since the keyword arguments of one model mean nothing to another.
"""

from __future__ import annotations

import difflib
import inspect
import json
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from longseq.training.config import ConfigError, Section, config_file, read_yaml, validate_config
from longseq.training.json_values import json_safe

__all__ = [
    "Config", "build_config", "find_config", "merge", "print_summary", "shipped_or_given",
    "signature_keys", "timm_name_error", "use_all_cores",
]

Config = dict[str, dict[str, Any]]
SHIPPED_PREFIX = "configs/"


def signature_keys(fn: Callable[..., Any], exclude: Sequence[str] = ()) -> tuple[str, ...]:
    """Keyword parameter names of ``fn`` (a class: its ``__init__``) minus ``exclude``, for a
    :class:`~longseq.training.config.Section` that must not accept what the command sets itself."""
    params = inspect.signature(fn.__init__ if inspect.isclass(fn) else fn).parameters
    skip = {"self", *exclude}
    return tuple(n for n, p in params.items()
                 if n not in skip and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD))


def shipped_or_given(value: str) -> str:
    """``value`` unchanged, unless it is a ``configs/...`` path missing from the working
    folder that the project ships: then the shipped file's path (so documented commands
    work from any folder, and in an install)."""
    if value.startswith(SHIPPED_PREFIX) and not Path(value).exists():
        try:
            return str(config_file(value[len(SHIPPED_PREFIX):]))
        except ConfigError:
            pass
    return value


def find_config(path: Path) -> Path:
    """The ``--config`` file to read: see :func:`shipped_or_given`."""
    return Path(shipped_or_given(str(path)))


def merge(base: Config, update: Mapping[str, Mapping[str, Any]],
          model_defaults: Mapping[str, Mapping[str, Any]] | None = None) -> Config:
    """``base`` with every section updated key by key from ``update``.

    When ``update`` names another ``model.name``, the model section restarts from
    ``model_defaults[name]`` (empty when absent) before ``update``'s model keys apply.
    """
    out = {name: dict(values) for name, values in base.items()}
    for name, values in update.items():
        values = dict(values or {})
        section = out.setdefault(name, {})
        if name == "model" and "name" in values and values["name"] != section.get("name"):
            section.clear()
            section.update((model_defaults or {}).get(values["name"], {}))
        section.update(values)
    return out


def timm_name_error(name: str) -> str | None:
    """Why ``name`` is not a timm model name (None when it is one)."""
    import timm

    import vision  # noqa: F401  (registers the longseq_* names)

    if timm.is_model(name):
        return None
    close = difflib.get_close_matches(name, timm.list_models(), n=1)
    return f"unknown timm model {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def build_config(path: Path, sections_for: Callable[[str], Sequence[Section]], defaults: Config,
                 overrides: Mapping[str, Mapping[str, Any]], *,
                 model_defaults: Mapping[str, Mapping[str, Any]] | None = None,
                 name_error: Callable[[str], str | None] | None = None,
                 sets: Mapping[str, Mapping[str, Any]] | None = None) -> Config:
    """Defaults, then the YAML at ``path``, then ``overrides`` (flags; None = not given), then
    ``sets`` (``--set SECTION.KEY=VALUE``, see :func:`~longseq.training.config.parse_set_overrides`).

    ``sections_for(model_name)`` gives the sections for a run of that model. The YAML is
    checked as read (errors name ``file:line``), and the merged result once more.
    ``name_error(name)`` rejects an unknown ``model.name``.
    """
    data, lines = read_yaml(path)
    source = str(path)
    yaml_model = data.get("model") if isinstance(data.get("model"), dict) else {}
    name = yaml_model.get("name", defaults["model"]["name"])
    given = validate_config(data, sections_for(name), source=source, lines=lines)
    if name_error is not None and "name" in yaml_model and (problem := name_error(str(name))):
        line = lines.get(("model", "name"))
        raise ConfigError(f"{source}:{line}: model.name: {problem}" if line else f"{source}: model.name: {problem}")
    cfg = merge(defaults, given, model_defaults)
    flags = {section: {k: v for k, v in values.items() if v is not None} for section, values in overrides.items()}
    cfg = merge(cfg, flags, model_defaults)
    cfg = merge(cfg, {section: dict(values) for section, values in (sets or {}).items()}, model_defaults)
    name = cfg["model"].get("name")
    given_names = {**flags.get("model", {}), **(sets or {}).get("model", {})}
    if name_error is not None and "name" in given_names and (problem := name_error(str(name))):
        raise ConfigError(f"model.name (given as a flag): {problem}")
    return validate_config(cfg, sections_for(name), source=f"{source} with the flags given")


def use_all_cores() -> None:
    """Torch on every core (:func:`longseq.hardware.command_threads`: ``LONGSEQ_NUM_THREADS``
    when set): a command's work is the only work of its process (and importing ultralytics
    sets ``OMP_NUM_THREADS=1`` when unset, which would otherwise leave one)."""
    import torch

    from longseq.hardware import command_threads

    torch.set_num_threads(command_threads())


def print_summary(summary: Mapping[str, Any]) -> None:
    """One ``key  value`` line per entry (floats to 4 significant digits), then the whole
    summary as one strict JSON line for scripts that parse the output (NaN as null)."""
    width = max(len(k) for k in summary)
    print("\nsummary")
    for key, value in summary.items():
        print(f"  {key:<{width}}  {value:.4g}" if isinstance(value, float) else f"  {key:<{width}}  {value}")
    print(json.dumps(json_safe(dict(summary))))
