"""One config scheme for every training script.

A config is a YAML mapping of *sections*: ``model``, ``data``, ``task``, ``trainer``, and a
domain's own extra where it needs one (``schedule`` for the DNA length warm-up). Each
section holds keyword arguments for the callables it feeds and is checked against their
signatures, so a typo is reported with its file and line instead of being ignored. Flags
given on the command line override the YAML, and ``--set SECTION.KEY=VALUE`` (any key, the
value read as YAML) overrides both; ``--print-config`` prints the merged result.

    sections = [Section("model", (DNALanguageModel,)), Section("trainer", trainer_accepts())]
    cfg = load_config("configs/genomics/tiny.yaml", sections)
    cfg = apply_overrides(cfg, {"data": {"batch_size": args.batch_size}})  # None values are skipped
"""

from __future__ import annotations

import argparse
import difflib
import inspect
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

__all__ = [
    "ConfigError", "Section", "add_config_arguments", "apply_overrides", "config_file", "dump_config", "find_config", "load_config",
    "add_cadence_arguments", "parse_set_overrides", "read_yaml", "refused_values", "trainer_accepts", "validate_config",
]

Config = dict[str, dict[str, Any]]


class ConfigError(ValueError):
    """A config that cannot be used; the message starts with ``<file>:<line>:`` where known."""


@contextmanager
def refused_values(section: str) -> Iterator[None]:
    """Inside, a ``ValueError`` or ``TypeError`` (a model refusing ``head_chunks`` that do not
    divide its heads, a window of 0) becomes a :class:`ConfigError` naming ``section``: the
    values were valid keys, but not usable together. Wrap only the constructor calls that a
    config section feeds."""
    try:
        yield
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        text = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
        raise ConfigError(f"{section}: {text.splitlines()[0] if text else repr(exc)}") from exc


@dataclass(frozen=True)
class Section:
    """A config section and what it accepts.

    ``accepts`` holds callables (classes or functions: their keyword parameters are the
    accepted keys; one with ``**kwargs`` accepts anything) and plain strings (extra key
    names, for keys a script reads itself). An empty ``accepts`` means free-form.
    """

    name: str
    accepts: tuple[Callable[..., Any] | str, ...] = ()
    doc: str = field(default="", compare=False)

    def accepted_keys(self) -> set[str] | None:
        """The accepted key names, or None when anything goes (free-form or ``**kwargs``)."""
        if not self.accepts:
            return None
        keys: set[str] = set()
        for item in self.accepts:
            if isinstance(item, str):
                keys.add(item)
                continue
            params = inspect.signature(item.__init__ if inspect.isclass(item) else item).parameters
            if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
                return None
            keys.update(n for n, p in params.items()
                        if n != "self" and p.kind not in (inspect.Parameter.VAR_POSITIONAL,))
        return keys


def config_file(relative: str) -> Path:
    """A YAML shipped under ``configs/``, e.g. ``config_file("genomics/tiny.yaml")``: the
    repository's folder in a checkout, package data (``longseq/configs``) in an install."""
    import importlib.resources

    path = Path(str(importlib.resources.files("longseq").joinpath("configs", relative)))
    if not path.is_file():
        raise ConfigError(f"{path}: no such shipped config")
    return path


def find_config(path: str | Path) -> Path:
    """The config file a ``--config`` value names: ``path`` itself when it exists, else, for a
    ``configs/...`` path, the copy the project ships (so documented commands work from any
    folder and from an install)."""
    path = Path(path)
    parts = path.parts
    if not path.exists() and len(parts) > 1 and parts[0] == "configs":
        try:
            return config_file(str(Path(*parts[1:])))
        except ConfigError:
            pass
    return path


def trainer_accepts(*extra: str) -> tuple[Callable[..., Any] | str, ...]:
    """``accepts`` for a ``trainer`` section: every ``lightning.Trainer`` argument, plus ``extra``
    keys the script handles itself."""
    import lightning

    return (lightning.Trainer, *extra)


def read_yaml(path: str | Path) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    """The YAML mapping in ``path`` and the 1-based line of every section and key in it.

    Raises :class:`ConfigError` naming the file (and line) for a missing file, invalid YAML,
    or a top level that is not a mapping of sections.
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config: {e}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: a config is a mapping of sections (model:, data:, ...), got {type(data).__name__}")
    lines: dict[tuple[str, ...], int] = {}
    for key_node, value_node in root.value:
        lines[(str(key_node.value),)] = key_node.start_mark.line + 1
        if isinstance(value_node, yaml.MappingNode):
            for sub_key, _ in value_node.value:
                lines[(str(key_node.value), str(sub_key.value))] = sub_key.start_mark.line + 1
    return data, lines


def _where(source: str, lines: Mapping[tuple[str, ...], int], *key: str) -> str:
    line = lines.get(tuple(key))
    return f"{source}:{line}" if line else source


def _suggest(name: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def validate_config(cfg: Mapping[str, Any], sections: Sequence[Section], *, source: str = "config",
                    lines: Mapping[tuple[str, ...], int] | None = None) -> Config:
    """Check ``cfg`` against ``sections`` and return it as ``{section: {key: value}}`` with every
    section present (empty where absent). Unknown sections and keys raise :class:`ConfigError`."""
    lines = lines or {}
    names = [s.name for s in sections]
    out: Config = {}
    for name, values in cfg.items():
        if name not in names:
            raise ConfigError(f"{_where(source, lines, name)}: unknown section {name!r}{_suggest(name, names)}; "
                              f"expected one of {names}")
        if values is not None and not isinstance(values, dict):
            raise ConfigError(f"{_where(source, lines, name)}: section {name!r} must be a mapping of keys, "
                              f"got {type(values).__name__}")
    for section in sections:
        values = dict(cfg.get(section.name) or {})
        accepted = section.accepted_keys()
        if accepted is not None:
            for key in values:
                if key not in accepted:
                    raise ConfigError(
                        f"{_where(source, lines, section.name, key)}: {section.name}.{key}: unknown key"
                        f"{_suggest(key, accepted)}; accepted: {sorted(accepted)}")
        out[section.name] = values
    return out


def load_config(path: str | Path, sections: Sequence[Section]) -> Config:
    """Read and check the YAML config at ``path`` (see :func:`validate_config`)."""
    data, lines = read_yaml(find_config(path))
    return validate_config(data, sections, source=str(path), lines=lines)


def apply_overrides(cfg: Config, overrides: Mapping[str, Mapping[str, Any]]) -> Config:
    """A copy of ``cfg`` with ``overrides[section][key]`` set wherever the value is not None
    (a flag the user did not give is None and leaves the YAML's value alone)."""
    out = {name: dict(values) for name, values in cfg.items()}
    for name, values in overrides.items():
        section = out.setdefault(name, {})
        section.update({k: v for k, v in values.items() if v is not None})
    return out


def dump_config(cfg: Mapping[str, Any]) -> str:
    """``cfg`` as YAML, in section order, paths as strings."""
    import yaml

    def plain(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    return yaml.safe_dump(plain(cfg), sort_keys=False, default_flow_style=False)


def add_config_arguments(parser: argparse.ArgumentParser, default: str | Path | None) -> None:
    """Add ``--config`` (default ``default``) and ``--print-config`` to ``parser``."""
    shown = default if default is not None else "the task's default config under configs/"
    parser.add_argument("--config", type=Path, default=default,
                        help=f"YAML config with sections model/data/task/trainer (default: {shown})")
    parser.add_argument("--print-config", action="store_true",
                        help="print the config merged with the flags given, as YAML, and exit")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", dest="set_values",
                        help="set any config key (the value is read as YAML: 7, 0.5, true, null, [1, 2]); "
                             "repeatable, applied after the YAML and the other flags")


def add_cadence_arguments(parser: argparse.ArgumentParser) -> None:
    """``--ckpt-every-steps`` and ``--ckpt-every-minutes``: the ``checkpoint`` section's keys
    (``longseq.training.checkpointing.CheckpointCadence``), as every training command spells them."""
    parser.add_argument("--ckpt-every-steps", type=int, help="checkpoint.every_steps: refresh last.ckpt every N "
                        "optimizer steps (default: 5%% of the planned steps, rounded up)")
    parser.add_argument("--ckpt-every-minutes", type=float, help="checkpoint.every_minutes: refresh last.ckpt every M "
                        "minutes of training (default 10, or 5%% of a time budget when that is shorter)")


def parse_set_overrides(pairs: Sequence[str]) -> Config:
    """``{section: {key: value}}`` from ``--set SECTION.KEY=VALUE`` strings, each value read as
    YAML (so ``null`` is None). A malformed pair is a :class:`ConfigError` naming it."""
    import yaml

    out: Config = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not section or not name or "." in name:
            raise ConfigError(f"--set {pair}: expected SECTION.KEY=VALUE, e.g. --set model.dim=192")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {pair}: the value is not YAML ({str(exc).splitlines()[0]})") from None
        out.setdefault(section, {})[name] = value
    return out
